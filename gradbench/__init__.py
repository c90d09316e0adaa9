"""gradbench: what model.eval(), torch.no_grad(), requires_grad=False and inference_mode really cost and save."""
from .case import Case
from .session import run_case
from .results import load
from .version import __version__

__all__ = ["Case", "run_case", "load", "__version__"]
