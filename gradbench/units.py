"""Byte counts as people read them (B, KiB, MiB, GiB: powers of 1024), wherever gradbench shows one:
the report's tables and capacity's table alike."""
from __future__ import annotations

import math


def human_bytes(n) -> str:
    """'-' for null or NaN; GiB is the largest unit."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
