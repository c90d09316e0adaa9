"""What every results reader shares: the error a file that cannot be read raises, a results file's text
(regular files only: a named pipe would block a reader for ever), and JSON parsed as the readers take it.
Kept apart from the readers so that the gradbench, asv and pytest-benchmark readers share it without
importing one another."""
from __future__ import annotations

import json
import math

from .inputs import NotRegularFile, read_regular


class ResultsFileError(ValueError):
    """A results file that is not gradbench JSONL (or cannot be read)."""


def read_text(path) -> str:
    """A results file's text (UTF-8); a named pipe, a device or a socket is refused (ResultsFileError)."""
    try:
        return read_regular(path).decode("utf-8")
    except NotRegularFile as exc:
        raise ResultsFileError(f"{exc}; give gradbench JSONL files, asv result folders or pytest-benchmark JSON "
                               "files") from None


def _null_constant(name: str):
    return None  # a bare NaN or Infinity another tool wrote: JSON has neither; read as null, like ours


def _finite_or_null(text: str):
    value = float(text)
    return value if math.isfinite(value) else None  # 1e999 overflows to infinity: null too


def loads(text: str, ours: bool = True):
    """JSON as the readers take it (``ours``: a bare NaN or Infinity, or a float overflowing to one, read as
    null). JSON nested deeper than Python recurses ('[' * 100000) is a ValueError, as any malformed JSON."""
    try:
        return json.loads(text, parse_constant=_null_constant, parse_float=_finite_or_null) if ours else \
            json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
