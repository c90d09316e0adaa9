"""Energy of the timed steps on CUDA, from NVML's total energy counter, read around the sampling loop.

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver loaded, for the whole GPU.
The counter is updated at intervals of its own (tens of milliseconds on recent GPUs), not at every
read, so a reading may be up to one update period old at either end of a window: the error of a
window's energy is at most about period / window of it. The period is measured once per GPU and
process (two consecutive updates, polled, when the meter is made: before the timing, whose cap must not
pay for it), and a window shorter than ``MIN_PERIODS`` periods gives
no energy (null, with the reason) rather than a number with an unknown error of more than 1/MIN_PERIODS.

The window is the timed blocks only: warm-up is outside it. CUDA timing synchronizes at the end of
every block, so the window's GPU work is exactly the counted steps; the host's gaps between blocks
are inside it (the GPU's idle power then is part of what running these steps costs). Another process
computing on the same GPU is counted too; the trust verdict names that (gpu_other_processes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

MIN_PERIODS = 10  # a window must span this many counter updates: error <= 1/MIN_PERIODS
MAX_WINDOW_S = 10.0  # --energy-sampling samples on at most this long for the counter
PERIOD_PROBE_S = 1.0  # at most this long polling for two updates of the counter
_PERIODS: dict = {}  # GPU (its torch device name) -> measured update period (s) or None, once per process


@dataclass(frozen=True)
class EnergyReading:
    """What a window measured: joules, or None and why."""

    joules: float | None
    window_s: float
    period_s: float | None
    note: str | None


def counter_period(read: Callable[[], int], now: Callable[[], float] = time.perf_counter,
                   limit_s: float = PERIOD_PROBE_S) -> float | None:
    """Seconds between two consecutive updates of the counter, polled; None if it did not update twice."""
    began = now()
    last, changes = read(), []
    while now() - began < limit_s:
        value = read()
        if value != last:
            changes.append(now())
            last = value
            if len(changes) == 2:
                return changes[1] - changes[0]
    return None


class EnergyMeter:
    """``start()`` and ``stop()`` around the timed blocks; ``reading`` after stop. ``nvml`` is pynvml, or a
    fake of it in tests; ``handle`` the GPU's NVML handle."""

    def __init__(self, nvml, handle, gpu: str, now: Callable[[], float] = time.perf_counter,
                 min_window: bool = False):
        """``gpu``: which GPU (cuda:N), the key of its counter's period, probed here once per process (a
        handle is a new object in every case). ``min_window`` (--energy-sampling): ask the timing loop to
        sample on (``wants_more``) until the window spans MIN_PERIODS updates, at most MAX_WINDOW_S."""
        self.nvml, self.handle, self.now, self.min_window = nvml, handle, now, min_window
        self.reading: EnergyReading | None = None
        self._start: tuple[float, int] | None = None
        self._failed: str | None = None
        self._period: float | None = None
        try:
            if gpu not in _PERIODS:
                _PERIODS[gpu] = counter_period(self._read, self.now)
            self._period = _PERIODS[gpu]
        except Exception as exc:  # NVMLError_NotSupported on GPUs without the counter, a fake without it
            self._failed = f"NVML has no total energy counter here ({type(exc).__name__}: {exc})"

    def _read(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def start(self) -> None:
        if self._failed:
            return
        try:
            self._start = (self.now(), self._read())
        except Exception as exc:
            self._failed = f"the energy counter failed ({type(exc).__name__}: {exc})"

    def wants_more(self) -> bool:
        if not self.min_window or self._failed or self._start is None or self._period is None:
            return False
        elapsed = self.now() - self._start[0]
        return elapsed < min(MIN_PERIODS * self._period * 1.02, MAX_WINDOW_S)

    def stop(self) -> EnergyReading:
        self.reading = self._finish()
        return self.reading

    def _finish(self) -> EnergyReading:
        if self._failed or self._start is None:
            return EnergyReading(None, 0.0, None, self._failed or "the energy window was never opened")
        began, first = self._start
        try:
            last = self._read()
        except Exception as exc:
            return EnergyReading(None, 0.0, self._period, f"the energy counter failed ({type(exc).__name__}: {exc})")
        window = self.now() - began
        period = self._period
        if period is None:
            return EnergyReading(None, window, None, f"the energy counter did not update twice in "
                                 f"{PERIOD_PROBE_S:g} s, so its resolution is unknown")
        if window < MIN_PERIODS * period:
            return EnergyReading(None, window, period, f"timed window {window * 1e3:.0f} ms is shorter than "
                                 f"{MIN_PERIODS} updates of the energy counter ({period * 1e3:.0f} ms each); "
                                 f"--energy-sampling times until it is long enough")
        return EnergyReading((last - first) / 1e3, window, period,
                             f"+-{period / window:.0%} (counter updates every {period * 1e3:.0f} ms, "
                             f"window {window:.2f} s)")


class NoEnergyMeter:
    """A CUDA case where NVML cannot be read: the reading says why."""

    def __init__(self, why: str):
        self.reading = EnergyReading(None, 0.0, None, why)

    def start(self) -> None:
        pass

    def wants_more(self) -> bool:
        return False

    def stop(self) -> EnergyReading:
        return self.reading


def energy_fields(reading: EnergyReading | None, steps: int, batch_size: int) -> dict:
    """energy_j (per step), samples_per_joule and energy_note for a record; all null on cpu (no reading)."""
    if reading is None:
        return dict(energy_j=None, samples_per_joule=None, energy_note=None)
    if reading.joules is None or steps <= 0:
        return dict(energy_j=None, samples_per_joule=None, energy_note=reading.note)
    if reading.joules <= 0:
        return dict(energy_j=None, samples_per_joule=None,
                    energy_note=f"the energy counter did not advance over {reading.window_s:.2f} s")
    per_step = reading.joules / steps
    return dict(energy_j=per_step, samples_per_joule=batch_size / per_step, energy_note=reading.note)


def meter_for(device, gpu_probe, min_window: bool = False) -> EnergyMeter | NoEnergyMeter | None:
    """The meter of a case's device: NVML's counter through the contention monitor's GPU probe on CUDA
    (``gpu_probe``: measure/contention.py's GpuProbe, or None where NVML is unavailable); none on cpu."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return None
    if gpu_probe is None:
        return NoEnergyMeter("NVML is unavailable (install nvidia-ml-py; it needs the NVIDIA driver)")
    return EnergyMeter(gpu_probe.nvml, gpu_probe.handle, str(device), min_window=min_window)
