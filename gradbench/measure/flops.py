"""Floating-point work of one step, counted by torch.utils.flop_counter.FlopCounterMode.

FlopCounterMode has no formula for the transformer fast path's fused kernels, so a forward that
takes the fast path would count as (nearly) free. Forward arithmetic does not depend on the mode,
so callers count forward flops once on the graph-recording path; train steps are counted as run.
"""
from __future__ import annotations

from typing import Callable

from torch.utils.flop_counter import FlopCounterMode


def count_flops(step: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())
