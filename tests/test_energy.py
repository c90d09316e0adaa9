"""Energy per step from NVML's total energy counter: the arithmetic on a fake NVML and a fake clock
(a counter that updates every period at a set power), the refusals, and the pipeline's window."""
import pytest
import torch

from fake_nvml import FakeClock, FakeNvml
from gradbench.measure import energy
from gradbench.measure.energy import EnergyMeter, counter_period, energy_fields, meter_for
from gradbench.measure.timing import time_step


@pytest.fixture(autouse=True)
def fresh_periods():
    energy._PERIODS.clear()  # the period is measured once per GPU handle and process
    yield
    energy._PERIODS.clear()


def test_counter_period_is_the_interval_between_two_updates():
    now = FakeClock(tick=1e-4)
    nvml = FakeNvml(watts=300, period_s=0.02, now=now)
    assert counter_period(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption("h"), now) == pytest.approx(0.02, abs=3e-4)
    still = FakeNvml(watts=0, period_s=0.02, now=now)  # a counter that never moves: resolution unknown
    assert counter_period(lambda: still.nvmlDeviceGetTotalEnergyConsumption("h"), now, limit_s=0.1) is None


def test_a_long_window_gives_energy_per_step_within_its_stated_resolution():
    now = FakeClock(tick=1e-4)
    meter = EnergyMeter(FakeNvml(watts=250, period_s=0.02, now=now), "h", "cuda:0", now=now)
    meter.start()
    now.t += 1.0  # one second of steps at 250 W
    reading = meter.stop()
    assert reading.joules == pytest.approx(250, rel=0.02 + 0.01)
    fields = energy_fields(reading, steps=500, batch_size=32)
    assert fields["energy_j"] == pytest.approx(0.5, rel=0.03)
    assert fields["samples_per_joule"] == pytest.approx(32 / fields["energy_j"])
    assert fields["energy_note"].startswith("+-2%")  # 20 ms of 1 s


def test_a_window_shorter_than_ten_counter_updates_gives_null_and_says_why():
    now = FakeClock(tick=1e-4)
    meter = EnergyMeter(FakeNvml(watts=250, period_s=0.1, now=now), "h", "cuda:0", now=now)
    meter.start()
    now.t += 0.5
    fields = energy_fields(meter.stop(), steps=100, batch_size=8)
    assert fields["energy_j"] is None and fields["samples_per_joule"] is None
    assert "shorter than 10 updates of the energy counter (100 ms each)" in fields["energy_note"]


def test_no_counter_no_nvml_and_cpu():
    now = FakeClock()
    meter = EnergyMeter(FakeNvml(watts=None, now=now), "h", "cuda:0", now=now)  # NVML raises NotSupported
    meter.start()
    fields = energy_fields(meter.stop(), steps=10, batch_size=1)
    assert fields["energy_j"] is None and "no total energy counter" in fields["energy_note"]
    missing = meter_for(torch.device("cuda", 0), None)
    assert "NVML is unavailable" in energy_fields(missing.stop(), 10, 1)["energy_note"]
    assert meter_for(torch.device("cpu"), None) is None
    assert energy_fields(None, 10, 1) == dict(energy_j=None, samples_per_joule=None, energy_note=None)


class StepClock:
    """A device clock where a step takes 2 ms, or 2.2 ms every other block, and moves the wall clock with it."""

    def __init__(self, now):
        self.now, self.steps, self.blocks = now, 0, 0

    def block(self, fn, steps):
        self.steps, self.blocks = self.steps + steps, self.blocks + 1
        took = (0.002 if self.blocks % 2 else 0.0022) * steps
        self.now.t += took
        return took


def test_the_window_covers_the_timed_blocks_only_not_the_warm_up():
    now = FakeClock(tick=1e-6)
    clock = StepClock(now)
    meter = EnergyMeter(FakeNvml(watts=100, period_s=0.005, now=now), "h", "cuda:0", now=now)
    timing = time_step(lambda: None, clock=clock, now=now, max_time_s=1.0, warmup_s=0.2, window=meter,
                       rel_ci=0.0)
    timed = timing.n_samples * timing.steps_per_sample
    assert clock.steps > timed  # the warm-up stepped too, outside the window
    fields = energy_fields(meter.reading, timed, batch_size=4)
    assert fields["energy_j"] == pytest.approx(0.21, rel=0.1)  # 100 W x 2.1 ms


def test_energy_sampling_times_on_until_the_counter_has_updated_ten_times():
    now = FakeClock(tick=1e-6)
    clock = StepClock(now)
    meter = EnergyMeter(FakeNvml(watts=100, period_s=0.1, now=now), "h", "cuda:0", now=now, min_window=True)
    timing = time_step(lambda: None, clock=clock, now=now, max_time_s=0.05, warmup_s=0.01, window=meter)
    assert meter.reading.window_s >= 10 * 0.1  # the counter, not the 50 ms cap, set the window
    assert energy_fields(meter.reading, timing.n_samples * timing.steps_per_sample, 4)["energy_j"] == \
        pytest.approx(0.21, rel=0.1)
    plain = EnergyMeter(FakeNvml(watts=100, period_s=0.1, now=now), "h2", "cuda:1", now=now)  # without it: null, and why
    time_step(lambda: None, clock=clock, now=now, max_time_s=0.05, warmup_s=0.01, window=plain)
    assert plain.reading.joules is None and "--energy-sampling" in plain.reading.note


class CountingNvml(FakeNvml):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.reads = 0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.reads += 1
        return super().nvmlDeviceGetTotalEnergyConsumption(handle)


def test_the_counter_period_is_probed_once_per_gpu_and_before_the_timing_not_inside_its_cap():
    """Found on an H200: probed in every case (each case's NVML handle is a new object), inside the timed
    cap, it cut 245 of 606 timings to five samples. Now: when the meter is made, once per GPU."""
    now = FakeClock(tick=1e-4)
    nvml = CountingNvml(watts=100, period_s=0.1, now=now)
    EnergyMeter(nvml, object(), "cuda:0", now=now)
    probed = nvml.reads
    assert probed > 2  # the polling happened here, at construction
    meter = EnergyMeter(nvml, object(), "cuda:0", now=now)  # the next case: another handle, the same GPU
    assert nvml.reads == probed
    clock = StepClock(now)
    began = now.t
    timing = time_step(lambda: None, clock=clock, now=now, max_time_s=0.05, warmup_s=0.01, window=meter)
    assert nvml.reads == probed + 2  # one read at each end of the window, no polling in the timing
    assert timing.n_samples > 5 and now.t - began < 0.2
