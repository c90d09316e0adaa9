"""Order statistics of timing samples: the median's distribution-free confidence interval and its width.

Plain Python (no torch), so readers of results files can judge a stored median as the timer does.
"""
from __future__ import annotations

import math
import statistics

Z95 = 1.959963984540054


def median_ci(samples: list[float], z: float = Z95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics."""
    xs = sorted(samples)
    n = len(xs)
    if n < 3:
        return xs[0], xs[-1]
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)  # 1-based rank -> 0-based index
    hi = min(n - 1, math.ceil(n / 2 + 1 + half) - 1)
    return xs[lo], xs[hi]


def iqr(samples: list[float]) -> float:
    """Interquartile range (inclusive quartiles); 0 for fewer than two samples."""
    if len(samples) < 2:
        return 0.0
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[2] - q[0]


def rel_halfwidth(median: float, low: float, high: float) -> float | None:
    """The larger side of an interval around the median, relative to it (None: no positive median)."""
    if not median > 0:
        return None
    return max(median - low, high - median) / median


def samples_rel_halfwidth(samples: list[float]) -> float | None:
    xs = [v for v in samples or () if isinstance(v, (int, float)) and math.isfinite(v)]
    if not xs:
        return None
    return rel_halfwidth(statistics.median(xs), *median_ci(xs))
