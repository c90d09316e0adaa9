"""What several commands take from the command line, checked: argument types, and results files read
(a file that cannot be read is bad input, one line, not a traceback)."""
from __future__ import annotations

from ..errors import BadInput
from ..settings import argument

SECONDS = argument(float, above=0)  # finite, > 0
INTEGER = argument(int)  # ASCII decimal digits: int() would take "1_000"


def load_results(paths: list[str]):
    """The records of gradbench JSONL files, asv result folders and pytest-benchmark JSON, as one frame."""
    from ..results import load

    try:
        return load(paths)
    except ValueError as exc:  # ResultsFileError: empty, truncated, foreign
        raise BadInput(str(exc)) from None


def add_input_axes(parser) -> None:
    """--seq-len and --image-size as case and explain take them: one value (run's sweep several)."""
    parser.add_argument("--seq-len", type=argument(int, minimum=1, maximum=2 ** 31), metavar="N",
                        help="sequence length, for text families and user models (default: the family's own)")
    parser.add_argument("--image-size", type=argument(int, minimum=1, maximum=2 ** 31), metavar="N",
                        help="image height and width, for image families (default: the family's own)")


def add_head(parser) -> None:
    """--head as case and explain take it: one module name (run's takes the same, said for a grid)."""
    parser.add_argument("--head", metavar="NAME", help="the module finetune_head trains (default: the last "
                        "nn.Linear the output depends on)")
