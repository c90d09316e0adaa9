"""The files that `report`, `compare --out` and the capacity figure write, safe to open whatever the records
held. Some names are made of values read from results files (a figure per device and dtype), and a results
file may come from anyone: so a name is a slug, and its file is checked to land in the output folder
before anything is written; a CSV's text cells cannot start a spreadsheet formula, nor hold a line break."""
from __future__ import annotations

import csv
import hashlib
import os
import re

import pandas as pd

from ..errors import BadInput
from .tables import terminal_text

UNSAFE = re.compile(r"[^A-Za-z0-9._:+-]+")
MAX_NAME = 120


def slug(text: str) -> str:
    """``text`` as one file name: ASCII letters, digits and ._:+- only, never starting with a dot or a dash
    (no '..', no hidden file, no option), at most MAX_NAME characters. A name that had to change ends in a
    hash of the original, so that two values never share one file."""
    clean = UNSAFE.sub("_", text).lstrip(".-")
    if clean and clean == text and len(clean) <= MAX_NAME:
        return clean
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{clean[:MAX_NAME - len(digest) - 1] or 'file'}-{digest}"


def output_path(out_dir: str, stem: str, ext: str) -> str:
    """``out_dir/slug(stem).ext``; one line and exit 2 (BadInput) if writing it would land outside
    ``out_dir``: a symlink by that name that leads elsewhere (files are replaced through symlinks)."""
    path = os.path.join(out_dir, f"{slug(stem)}.{ext}")
    target = os.path.realpath(path)
    if os.path.dirname(target) != os.path.realpath(out_dir):
        raise BadInput(f"refusing to write {path!r}: it leads to {target!r}, outside {out_dir!r}; remove that "
                       "link, or choose another --out")
    return path


def output_root(out_dir: str) -> str:
    """``out_dir``, the folder a report or comparison is written into; one line and exit 2 (BadInput) if it is
    itself a link (a default report folder, X-report/ or results/report/, planted as a link beside a results
    file would send every file elsewhere). Links above it are the user's own layout, and are followed."""
    if os.path.islink(os.path.normpath(out_dir)):
        raise BadInput(f"refusing to write into {out_dir!r}: it is a link to {os.path.realpath(out_dir)!r}; remove "
                       "that link, or choose another --out")
    return out_dir


def output_folder(out_dir: str, name: str) -> str:
    """``out_dir/name``, a folder for files of the output (figures/); one line and exit 2 (BadInput) if it is a
    link that leads out of ``out_dir`` (planted beside a results file whose default report folder it is)."""
    path = os.path.join(out_dir, name)
    target = os.path.realpath(path)
    if target != os.path.join(os.path.realpath(out_dir), name):
        raise BadInput(f"refusing to write into {path!r}: it leads to {target!r}, outside {out_dir!r}; remove that "
                       "link, or choose another --out")
    return path


FORMULA_STARTS = ("=", "+", "-", "@")  # and a tab or CR, which csv_safe shows escaped first


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its text cells inert in a spreadsheet: control characters shown escaped (a bare CR in
    'vm2\\r=cmd|...' starts a row for readers that break lines there), then a cell that would read as a
    formula ('=HYPERLINK(...)', '+cmd|...') prefixed with a single quote (OWASP's rule for CSV injection).
    Numbers stay numbers, negative ones too. Write it with csv.QUOTE_NONNUMERIC (csv_text)."""
    def inert(value):
        if not isinstance(value, str):
            return value
        value = terminal_text(value)
        return "'" + value if value.startswith(FORMULA_STARTS) else value

    return table.apply(lambda column: column if pd.api.types.is_numeric_dtype(column) else column.map(inert))


def csv_text(table: pd.DataFrame) -> str:
    """``table`` as CSV text, csv_safe, every text field quoted: a field can start nothing."""
    return csv_safe(table).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)
