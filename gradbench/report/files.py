"""Names of the files that `report`, `compare --out` and the capacity figure write. Some are made of values
read from results files (a figure per device and dtype), and a results file may come from anyone: so a
name is a slug, and its file is checked to land in the output folder before anything is written."""
from __future__ import annotations

import hashlib
import os
import re

from ..errors import BadInput

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
