"""gradbench: what model.eval(), torch.no_grad(), requires_grad=False and inference_mode really cost and save."""
__version__ = "0.4.0"

from .case import Case  # noqa: E402
from .pipeline import run_case  # noqa: E402
from .results import load  # noqa: E402

__all__ = ["Case", "run_case", "load", "__version__"]
