"""Byte counts (B, KiB, MiB, GiB: powers of 1024) and ratios as people read them, wherever gradbench shows
one: the report's tables, findings and answer, capacity's table and compare's alike."""
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


RATIO_MAX_DECIMALS = 6


def ratio_text(value, decimals: int = 2, suffix: str = "x") -> str:
    """A ratio with at least ``decimals`` decimals and, below 1, two significant digits: 0.0031x, not 0.00x
    (a ratio printed as zero says the mode cost nothing). '-' for null or NaN; one beyond
    RATIO_MAX_DECIMALS decimals in scientific notation."""
    try:
        value = float(value)
    except (TypeError, ValueError):  # null (None, pandas' NA)
        return "-"
    if math.isnan(value):
        return "-"
    if value == 0 or abs(value) >= 10 ** -decimals * 10:  # its first two significant digits are shown
        return f"{value:.{decimals}f}{suffix}"
    needed = 1 - math.floor(math.log10(abs(value)))  # decimals for two significant digits
    if needed > RATIO_MAX_DECIMALS:
        return f"{value:.1e}{suffix}"
    return f"{value:.{needed}f}{suffix}"
