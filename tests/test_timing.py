"""Timing arithmetic with injected clocks: convergence, the cap, and CUDA events on the case's own device."""
import itertools

import pytest
import torch

from gradbench.measure.timing import CudaClock, median_ci, time_step

from fake_cuda import FakeCuda


class ScriptedClock:
    """Returns block durations from a script (per step), whatever the function did."""

    def __init__(self, per_step):
        self.per_step = itertools.cycle(per_step)
        self.blocks = []

    def block(self, fn, steps):
        fn()
        self.blocks.append(steps)
        return next(self.per_step) * steps


def test_steady_steps_converge_and_report_the_scripted_time():
    clock = ScriptedClock([2e-3])
    timing = time_step(lambda: None, max_time_s=5, clock=clock)
    assert timing.converged and timing.median == pytest.approx(2e-3)
    assert timing.n_samples == 5 and timing.iqr == pytest.approx(0.0)
    assert timing.steps_per_sample == 1  # a 2 ms step already fills a 1 ms block


def test_short_steps_are_timed_in_blocks():
    clock = ScriptedClock([1e-5])
    timing = time_step(lambda: None, max_time_s=5, clock=clock)
    assert timing.steps_per_sample == 100  # 1 ms / 10 us
    assert all(steps == 100 for steps in clock.blocks[-timing.n_samples:])


def test_noisy_steps_stop_at_the_cap_without_converging():
    clock = ScriptedClock([1e-3, 3e-3, 1e-3, 9e-3, 2e-3])
    timing = time_step(lambda: None, max_time_s=1e-9, clock=clock)  # the cap is reached at once
    assert not timing.converged
    assert timing.n_samples == 5  # never fewer than min_samples, even past the cap
    low, high = timing.ci
    assert high - low > 0.04 * timing.median  # wider than +-2%: the reason it did not converge


def test_median_ci_uses_order_statistics():
    samples = list(range(1, 101))
    low, high = median_ci(samples)
    # 1-based ranks floor(n/2 - 1.96 sqrt(n)/2) and ceil(n/2 + 1 + 1.96 sqrt(n)/2) for n = 100
    assert (low, high) == (40, 61)


def test_cuda_clock_records_events_on_the_case_device_stream():
    cuda = FakeCuda()
    ran_on = []

    def step():
        ran_on.append(cuda.current)
        cuda.now += 0.004

    seconds = CudaClock(torch.device("cuda", 1), cuda).block(step, 3)
    assert seconds == pytest.approx(0.012)
    assert ran_on == [1, 1, 1]  # the steps were launched with cuda:1 current
    streams = {entry[1] for entry in cuda.log}
    assert streams == {"stream-of-cuda:1"}
    assert cuda.current == 0  # the previous device is current again


def test_plain_cuda_names_the_current_gpu_so_clocks_and_memory_read_one_device(monkeypatch):
    from gradbench.workload import resolved_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolved_device("cuda") == torch.device("cuda", 1)
    assert resolved_device("cuda:0") == torch.device("cuda", 0)
    assert resolved_device("cpu") == torch.device("cpu")
