"""`gradbench list`: every model family and size with its exact parameter count and its weights' bytes per
dtype (built on the meta device: instant, even for llama 8b), the input axis it takes, where its
architecture comes from and the extra it needs; then the modes with their definitions.
(Named listing, not list, so that it does not shadow the builtin.)"""
from __future__ import annotations

import argparse

LIST_DTYPES = ("float32", "bfloat16", "float16")


def add_parser(sub):
    p = sub.add_parser("list", help="models with sizes, parameter counts and weight bytes; modes with their "
                       "definitions")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or json: one document, stable keys")
    return p


def catalog() -> dict:
    """The document `--format json` prints: families (with sizes, parameters and bytes per dtype, or why a
    family cannot be built here: null counts), then modes."""
    from ..catalog import Unavailable, weights
    from ..models import FAMILIES
    from ..modes import MODES

    families = []
    for family in FAMILIES.values():
        entry = {"name": family.name, "description": family.description, "inputs": family.inputs,
                 "default": family.default_input, "source": family.source, "extra": family.extra,
                 "available": True, "needs": None, "error": None, "sizes": []}
        for size in family.sizes:
            row = {"size": size, "params": None, "param_bytes": {dtype: None for dtype in LIST_DTYPES}}
            if entry["available"]:
                try:
                    for dtype in LIST_DTYPES:
                        row["params"], row["param_bytes"][dtype] = weights(family.name, size, dtype)
                except Unavailable as exc:
                    entry.update(available=False, needs=exc.needs, error=None if exc.needs else str(exc))
            entry["sizes"].append(row)
        families.append(entry)
    return {"families": families,
            "modes": [{"name": mode.name, "description": mode.description} for mode in MODES.values()]}


def _aligned(rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns padded to their widest cell (numbers right-aligned); the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join((cell.rjust(w) if i in right else cell.ljust(w)) if i < len(row) - 1 else cell
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _table(document: dict) -> str:
    from ..text import terminal_text
    from ..units import human_bytes

    header = ["family", "size", "parameters", *LIST_DTYPES, "input", "source", "extra"]
    rows = [header]
    for family in document["families"]:
        axis = f"{family['inputs']} {family['default']}" if family["inputs"] else "fixed"
        extra = family["extra"] or "-"
        if family["needs"]:
            extra += f" (needs: {family['needs']})"
        elif family["error"]:
            extra += f" ({family['error']})"
        elif family["extra"]:
            extra += " (installed)"
        for i, size in enumerate(family["sizes"]):
            first = i == 0
            rows.append([family["name"] if first else "", size["size"],
                         f"{size['params']:,}" if size["params"] is not None else "-",
                         *(human_bytes(size["param_bytes"][dtype]) for dtype in LIST_DTYPES),
                         axis if first else "", family["source"] if first else "", extra if first else ""])
    lines = ["models: exact parameter counts and the weights' bytes per dtype (at the default input; built on "
             "the meta device)", ""]
    lines += ["  " + terminal_text(line) for line in _aligned(rows, right={2, 3, 4, 5})]
    lines += ["", "  MODULE:FUNCTION or path/to/file.py:FUNCTION  your own: FUNCTION(size=SIZE) -> (model, make_input)",
              "", "modes:"]
    lines += [f"  {mode['name']:20s} {mode['description']}" for mode in document["modes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    document = catalog()
    if getattr(args, "format", "table") == "json":
        print(json.dumps(document, indent=1, allow_nan=False))
    else:
        print(_table(document))
    return 0
