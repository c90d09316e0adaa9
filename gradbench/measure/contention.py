"""How much of the machine other work used while a case ran: CPU from /proc, the GPU from NVML.

A timing taken while other processes competed for the CPUs, while the hypervisor stole time, or
while the GPU was shared or throttling for heat, measures the machine's state, not the step. This
module only observes; ``measure/trust.py`` decides what to distrust.

CPU: over a window, the busy time (user, nice, system, irq, softirq) that /proc/stat counts on the
CPUs this process may run on, minus this process's own CPU time, as a share of those CPUs' capacity;
steal likewise. /proc/stat counts in clock ticks (usually 10 ms), so a share over a short window is
coarse: the slack of two ticks per CPU is given to the quiet side. So, as well, the time this
process's threads spent runnable but waiting for a CPU (the scheduler's run_delay in
/proc/self/task/*/schedstat, in nanoseconds), per second they ran: exact over any window, and the
direct cost of contention to this process.

GPU (optional; needs nvidia-ml-py): other compute processes on the case's GPU, its SM clock and
temperature, and the throttle reasons active, read when the window closes.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Callable

# /proc/stat columns after the CPU name: user nice system idle iowait irq softirq steal guest guest_nice
_BUSY_COLUMNS = (0, 1, 2, 5, 6)  # guest time is already inside user and nice
_STEAL_COLUMN = 7
_TICK_SLACK_PER_CPU = 2

# NVML clock-event (throttle) reason bits and their names (nvml.h, nvmlClocksEventReason*)
THROTTLE_REASONS = {
    0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
}


@dataclass(frozen=True)
class CpuTicks:
    """Cumulative /proc/stat ticks over some CPUs, and this process's CPU seconds, at one moment."""

    total: int
    busy: int
    steal: int
    own_cpu_s: float


def read_proc_stat(path: str = "/proc/stat") -> dict[int, list[int]]:
    """Per-CPU tick counters: {cpu index: [user, nice, system, idle, ...]}; {} where unreadable."""
    out: dict[int, list[int]] = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(" ")
                if name.startswith("cpu") and name[3:].isdigit():
                    out[int(name[3:])] = [int(v) for v in rest.split()]
    except (OSError, ValueError):
        return {}
    return out


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cpu_ticks(stat: dict[int, list[int]], cpus: set[int] | None, own_cpu_s: float) -> CpuTicks | None:
    rows = [v for i, v in stat.items() if cpus is None or i in cpus]
    if not rows:
        return None
    total = sum(sum(v[:8]) for v in rows)  # guest columns (8, 9) are inside user and nice
    busy = sum(v[i] for v in rows for i in _BUSY_COLUMNS if i < len(v))
    steal = sum(v[_STEAL_COLUMN] for v in rows if len(v) > _STEAL_COLUMN)
    return CpuTicks(total, busy, steal, own_cpu_s)


def cpu_shares(start: CpuTicks | None, end: CpuTicks | None, tick_s: float, cpus: int) -> tuple[float | None, float | None]:
    """(share of capacity other processes used, share stolen) between two readings; None if unknown."""
    if start is None or end is None:
        return None, None
    capacity = end.total - start.total
    if capacity <= 0:
        return None, None
    own_ticks = (end.own_cpu_s - start.own_cpu_s) / tick_s
    slack = _TICK_SLACK_PER_CPU * cpus
    other = max(0.0, (end.busy - start.busy) - own_ticks - slack)
    stolen = max(0.0, (end.steal - start.steal) - slack)
    return min(1.0, other / capacity), min(1.0, stolen / capacity)


def read_own_schedstat(task_dir: str = "/proc/self/task") -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting) summed over this process's threads; None if unavailable."""
    ran = waited = 0
    try:
        tasks = os.listdir(task_dir)
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(os.path.join(task_dir, tid, "schedstat")) as f:
                fields = f.read().split()
            ran, waited = ran + int(fields[0]), waited + int(fields[1])
        except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
            continue
    return ran, waited


def wait_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """Time this process's threads waited for a CPU per unit of time they ran, between two readings."""
    if start is None or end is None:
        return None
    ran = end[0] - start[0]
    return max(0.0, end[1] - start[1]) / ran if ran > 0 else None


@dataclass
class Contention:
    """What a window saw. Fields are None where the instrument is unavailable (no /proc, no NVML)."""

    cpu_other_share: float | None = None
    cpu_steal_share: float | None = None
    cpu_wait_share: float | None = None
    gpu_other_processes: int | None = None
    gpu_sm_clock_mhz: int | None = None
    gpu_temperature_c: int | None = None
    gpu_throttle_reasons: list[str] | None = None
    window_s: float = 0.0

    def fields(self) -> dict:
        return dict(cpu_other_share=self.cpu_other_share, cpu_steal_share=self.cpu_steal_share,
                    cpu_wait_share=self.cpu_wait_share,
                    gpu_other_processes=self.gpu_other_processes, gpu_sm_clock_mhz=self.gpu_sm_clock_mhz,
                    gpu_temperature_c=self.gpu_temperature_c, gpu_throttle_reasons=self.gpu_throttle_reasons)


@functools.lru_cache(maxsize=1)
def load_nvml():
    """The pynvml module (nvidia-ml-py), initialised; None where it or the driver is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # ImportError, or NVMLError: no driver, no library
        return None


class GpuProbe:
    """NVML readings of one CUDA device. ``nvml`` is pynvml, or a fake of it in tests."""

    def __init__(self, device, nvml, handle=None):
        self.nvml = nvml
        self.handle = handle if handle is not None else self._handle(device)

    def _handle(self, device):
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:  # NVML's order need not be CUDA's (CUDA_VISIBLE_DEVICES, PCI order)
            try:
                return self.nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except Exception:
                pass
        return self.nvml.nvmlDeviceGetHandleByIndex(index)

    def read(self) -> dict:
        nvml, h, out = self.nvml, self.handle, {}
        try:
            procs = nvml.nvmlDeviceGetComputeRunningProcesses(h)
            pids = {p.pid for p in procs}
            # In a container NVML may report host pids, and ours is not among them: count one as ours.
            out["gpu_other_processes"] = len(pids - {os.getpid()}) if os.getpid() in pids else max(0, len(pids) - 1)
        except Exception:
            pass
        try:
            out["gpu_sm_clock_mhz"] = int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))
        except Exception:
            pass
        try:
            out["gpu_temperature_c"] = int(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
        except Exception:
            pass
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        try:
            bits = int(reasons(h))
            out["gpu_throttle_reasons"] = [name for bit, name in THROTTLE_REASONS.items() if bits & bit]
        except Exception:
            pass
        return out


@dataclass
class ContentionMonitor:
    """Open a window with ``start()``, close it with ``stop() -> Contention``.

    The readers are seams: tests give fake /proc contents, a fake process clock and a fake NVML.
    """

    gpu: GpuProbe | None = None
    read_stat: Callable[[], dict[int, list[int]]] = read_proc_stat
    own_cpu_s: Callable[[], float] = time.process_time
    read_sched: Callable[[], tuple[int, int] | None] = read_own_schedstat
    cpus: set[int] | None = field(default_factory=_allowed_cpus)
    tick_s: float = field(default_factory=lambda: 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01)
    _start: CpuTicks | None = None
    _sched: tuple[int, int] | None = None
    _began: float = 0.0

    def _reading(self) -> CpuTicks | None:
        return cpu_ticks(self.read_stat(), self.cpus, self.own_cpu_s())

    def start(self) -> "ContentionMonitor":
        self._began = time.perf_counter()
        self._start = self._reading()
        self._sched = self.read_sched()
        return self

    def stop(self) -> Contention:
        sched = self.read_sched()
        end = self._reading()
        ncpu = len(self.cpus) if self.cpus else max(1, len(self.read_stat()))
        other, steal = cpu_shares(self._start, end, self.tick_s, ncpu)
        result = Contention(cpu_other_share=other, cpu_steal_share=steal, cpu_wait_share=wait_share(self._sched, sched),
                            window_s=time.perf_counter() - self._began)
        if self.gpu is not None:
            for key, value in self.gpu.read().items():
                setattr(result, key, value)
        return result


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) process ``pid`` has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def monitor_of(pids) -> ContentionMonitor:
    """A monitor of this machine's CPUs for work done by this process and ``pids`` together (a manager and
    the workers it alternates between): what anything else used is the contention, and the wait share is
    theirs."""
    def own() -> float:
        return time.process_time() + sum(process_cpu_s(pid) for pid in pids)

    def sched() -> tuple[int, int] | None:
        readings = [read_own_schedstat(f"/proc/{pid}/task") for pid in pids]
        if any(r is None for r in readings):
            return None
        return sum(r[0] for r in readings), sum(r[1] for r in readings)

    return ContentionMonitor(own_cpu_s=own, read_sched=sched)


def monitor_for(device) -> ContentionMonitor:
    """A monitor of this machine's CPUs, and of the case's GPU where NVML is available."""
    import torch

    device = torch.device(device)
    gpu = None
    if device.type == "cuda":
        nvml = load_nvml()
        if nvml is not None:
            try:
                gpu = GpuProbe(device, nvml)
            except Exception:
                gpu = None
    return ContentionMonitor(gpu=gpu)
