"""Timing arithmetic with injected clocks: convergence, the cap, and CUDA events on the case's own device."""
import gc
import itertools

import pytest
import torch

from gradbench.measure.timing import CudaClock, median_ci, time_step, warm_up

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


class VirtualTime:
    """A clock whose blocks advance a virtual wall clock by their scripted duration: the cap is testable."""

    def __init__(self, per_step):
        self.per_step = itertools.cycle(per_step)
        self.t = 0.0
        self.blocks = []

    def block(self, fn, steps):
        fn()
        took = next(self.per_step) * steps
        self.t += took
        self.blocks.append(steps)
        return took

    def now(self):
        return self.t


def test_calibration_sizes_blocks_from_the_fastest_warmup_step():
    clock = VirtualTime([5e-4, 1e-4, 1e-4, 1e-4])  # a slow first step, then 100 us steps
    timing = time_step(lambda: None, max_time_s=5, clock=clock, now=clock.now, warmup_s=0.0, warmup_steps=2)
    assert timing.steps_per_sample == 10  # 1 ms block / the fastest warm-up step (100 us), not the first


def test_warm_up_steps_until_its_time_has_passed_not_just_its_count():
    clock = VirtualTime([5e-3, 1e-3])  # slow steps first: a count alone would stop while they last
    per_step, spent = warm_up(lambda: None, clock, warmup_s=0.15, warmup_steps=1, now=clock.now)
    assert spent == pytest.approx(0.15) and per_step == pytest.approx(1e-3)
    assert len(clock.blocks) == 50  # 0.15 s of steps alternating 5 and 1 ms


def test_warm_up_takes_at_most_a_quarter_of_the_cap_but_never_fewer_than_its_steps():
    clock = VirtualTime([0.1])
    _, spent = warm_up(lambda: None, clock, warmup_s=10, warmup_steps=3, max_time_s=0.4, now=clock.now)
    assert len(clock.blocks) == 3 and spent == pytest.approx(0.3)  # 3 steps, though past 0.4 / 4


def test_a_median_precise_to_10_percent_stops_at_the_cap():
    # alternating 1.00 / 1.10 ms: the median's interval never reaches +-2% but stays within +-10%
    clock = VirtualTime([1.0e-3, 1.1e-3])
    timing = time_step(lambda: None, max_time_s=0.5, clock=clock, now=clock.now, warmup_s=0.0)
    assert not timing.converged and timing.rel_halfwidth <= 0.10
    assert 0.5 <= clock.t < 0.5 + 0.01  # stopped at the first sample past the cap


def test_an_imprecise_median_gets_more_time_then_gives_up_at_the_extended_cap():
    clock = VirtualTime([1e-3, 5e-3, 1e-3, 9e-3, 2e-3, 7e-3])  # two populations: the median wanders
    timing = time_step(lambda: None, max_time_s=0.5, clock=clock, now=clock.now, warmup_s=0.0, extend=3.0)
    assert not timing.converged and timing.rel_halfwidth > 0.10
    assert 1.5 <= clock.t < 1.5 + 0.05  # went on past the cap, up to 3 x the cap, not further


def test_min_samples_are_taken_even_when_one_block_exceeds_the_cap():
    clock = VirtualTime([1.0, 3.0])  # one-second steps, a 0.1 s cap
    timing = time_step(lambda: None, max_time_s=0.1, clock=clock, now=clock.now, min_samples=5)
    assert timing.n_samples == 5


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_garbage_collector_is_off_while_timing_and_restored_after(enabled_before):
    seen = []
    clock = VirtualTime([1e-3])
    (gc.enable if enabled_before else gc.disable)()
    try:
        time_step(lambda: seen.append(gc.isenabled()), max_time_s=0.05, clock=clock, now=clock.now)
        assert seen and not any(seen)  # warm-up and every timed block ran with the collector off
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()


def test_the_collector_is_restored_when_the_step_raises():
    def boom():
        raise RuntimeError("step failed")

    gc.enable()
    with pytest.raises(RuntimeError):
        time_step(boom, max_time_s=0.05, clock=VirtualTime([1e-3]))
    assert gc.isenabled()


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
