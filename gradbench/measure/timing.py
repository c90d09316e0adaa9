"""Wall time of one step: warm up, then sample until the median is known to +-2% or a cap is hit.

A median still wider than +-10% at the cap gets more time, up to ``EXTEND`` times the cap, before
sampling gives up (measure/trust.py then marks it imprecise). The garbage collector is off while
the step is timed, as in timeit, and restored afterwards: a collection is not the step's cost.

CPU samples use time.perf_counter; CUDA samples use CUDA events with one synchronize at the end of
each block. A sample is a block of calibrated length divided by its step count, so that very short
steps are not dominated by timer overhead. All raw samples are kept.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .stats import iqr, median_ci, rel_halfwidth

WARMUP_S = 0.15  # seconds of stepping before a step counts as warm (warm_up)
MIN_BLOCK_S = 1e-3  # a sample is a block of steps at least this long (steps_per_block)
PRECISE = 0.10  # the interval half-width (relative) worth extra sampling time beyond the cap
EXTEND = 3.0  # ... up to this many times the cap


@dataclass
class Timing:
    samples_s: list[float]
    steps_per_sample: int
    warmup_s: float
    measured_s: float = 0.0  # wall time spent in the sampling loop (excludes warm-up)
    converged: bool = False

    @property
    def n_samples(self) -> int:
        return len(self.samples_s)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def iqr(self) -> float:
        return iqr(self.samples_s)

    @property
    def ci(self) -> tuple[float, float]:
        return median_ci(self.samples_s)

    @property
    def rel_halfwidth(self) -> float | None:
        """The larger side of the median's 95% interval, relative to the median (None: no median)."""
        return rel_halfwidth(self.median, *self.ci) if self.samples_s else None


class CpuClock:
    def block(self, fn: Callable[[], None], steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return time.perf_counter() - start


class CudaClock:
    """CUDA events on the current stream of the case's own device (cuda:1 must not time an idle cuda:0),
    one synchronize per block. ``cuda`` is torch.cuda, or a fake of it in tests."""

    def __init__(self, device: torch.device | str, cuda=torch.cuda):
        self.device = torch.device(device)
        self.cuda = cuda

    def block(self, fn: Callable[[], None], steps: int) -> float:
        with self.cuda.device(self.device):
            stream = self.cuda.current_stream(self.device)
            start = self.cuda.Event(enable_timing=True)
            end = self.cuda.Event(enable_timing=True)
            start.record(stream)
            for _ in range(steps):
                fn()
            end.record(stream)
            end.synchronize()
        return start.elapsed_time(end) / 1e3


def clock_for(device: torch.device | str):
    device = torch.device(device)
    return CudaClock(device) if device.type == "cuda" else CpuClock()


def time_step(
    fn: Callable[[], None],
    device: torch.device | str = "cpu",
    max_time_s: float = 2.0,
    min_samples: int = 5,
    rel_ci: float = 0.02,
    min_block_s: float = MIN_BLOCK_S,
    warmup_s: float = WARMUP_S,
    clock=None,
    warmup_steps: int = 2,
    now: Callable[[], float] = time.perf_counter,
    precise: float = PRECISE,
    extend: float = EXTEND,
    window=None,
) -> Timing:
    """Time ``fn`` (one step) until the 95% CI of the median is within +-rel_ci, or max_time_s passes.

    At the cap, a median wider than +-``precise`` is sampled on, up to ``extend`` x max_time_s.
    At least ``min_samples`` samples are always taken, even past the cap; the cap covers warm-up too.
    ``clock`` (default: the device's) and ``now`` (the wall clock behind the cap) are the seams where
    tests put fakes. ``window``: an object whose ``start()`` and ``stop()`` are called around the sampling
    loop, warm-up excluded, and whose ``wants_more()`` keeps it sampling (the energy meter, measure/energy.py). Warm-up (``warm_up``): at least ``warmup_steps`` steps (a cold step's first call
    pays for lazy initialisation; the pipeline's memory and counting passes have already run its step
    three times and ask for one), then more until ``warmup_s``.
    """
    clock = clock or clock_for(device)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _sample(fn, clock, max_time_s, min_samples, rel_ci, min_block_s, warmup_s, warmup_steps, now,
                       precise, extend, window)
    finally:
        if gc_was_enabled:
            gc.enable()


def warm_up(fn: Callable[[], None], clock, warmup_s: float = WARMUP_S, warmup_steps: int = 1,
            max_time_s: float = math.inf, now: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """The one warm-up rule: at least ``warmup_steps`` steps, then more until ``warmup_s`` has passed (at
    most a quarter of ``max_time_s``). The first steps after set-up are slow for a while (lazy
    initialisation, cold caches and sleeping threads), so a count of steps is not enough: a step is
    warm after a stretch of time spent stepping. Returns (fastest step seen, seconds spent)."""
    began = now()
    per_step = max(min(clock.block(fn, 1) for _ in range(max(1, warmup_steps))), 1e-9)
    while now() - began < min(warmup_s, max_time_s / 4):
        per_step = min(per_step, clock.block(fn, 1))
    return per_step, now() - began


def steps_per_block(per_step_s: float, min_block_s: float = MIN_BLOCK_S) -> int:
    """Steps in one sample: enough for ``min_block_s``, so that a short step is not lost in timer overhead."""
    return max(1, math.ceil(min_block_s / max(per_step_s, 1e-9)))


def _sample(fn, clock, max_time_s, min_samples, rel_ci, min_block_s, warmup_s, warmup_steps, now, precise,
            extend, window=None) -> Timing:
    began = now()
    per_step, warm = warm_up(fn, clock, warmup_s, warmup_steps, max_time_s, now)
    steps = steps_per_block(per_step, min_block_s)
    timing = Timing(samples_s=[], steps_per_sample=steps, warmup_s=warm)
    if window is not None:
        window.start()
    started = now()
    while True:
        timing.samples_s.append(clock.block(fn, steps) / steps)
        if len(timing.samples_s) < min_samples:
            continue
        width = timing.rel_halfwidth
        timing.converged = width is not None and width <= rel_ci
        elapsed = now() - began
        finished = timing.converged or (elapsed >= max_time_s and (
            width is not None and width <= precise or elapsed >= extend * max_time_s))
        if finished and not (window is not None and window.wants_more()):  # --energy-sampling: a long window
            break
    timing.measured_s = now() - started
    if window is not None:
        window.stop()
    return timing
