"""`gradbench list`: models with sizes and parameter counts; modes with their definitions.
(Named listing, not list, so that it does not shadow the builtin.)"""
from __future__ import annotations


def add_parser(sub):
    return sub.add_parser("list", help="models with sizes and parameter counts; modes with their definitions")


def run(args) -> int:
    import torch

    from ..models import BUILTIN_MODELS, SIZES, build_model, parameter_count
    from ..modes import MODES

    print("models (exact parameter counts):")
    for family in BUILTIN_MODELS:
        counts = []
        for size in SIZES:
            with torch.device("meta"):  # count without allocating 100M-parameter models
                model, _ = build_model(family, size)
            counts.append(f"{size} {parameter_count(model):,}")
        print(f"  {family:12s} " + ", ".join(counts))
    print("  MODULE:FUNCTION or path/to/file.py:FUNCTION  your own: FUNCTION(size=SIZE) -> (model, make_input)")
    print("\nmodes:")
    for mode in MODES.values():
        print(f"  {mode.name:20s} {mode.description}")
    return 0
