"""Is this machine quiet enough to benchmark? Timer overhead, noise, contention, and agreement with
torch's Timer. Exit status 1 names each reason, so CI can run it before a benchmark job.

Agreement compares gradbench's median with torch.utils.benchmark.Timer.adaptive_autorange on the
same step in the same process: an independent implementation, so a disagreement points at either
a noisy machine or a harness problem.
"""
from __future__ import annotations

import statistics
import time

import torch

from .case import Case
from .record import case_label
from .measure.contention import ContentionMonitor, monitor_for
from .measure.timing import time_step
from .measure.trust import distrust_reasons
from .plan import Grid
from .session import Session, not_applicable

AGREEMENT_CASES = (("mlp", "tiny", 8), ("cnn", "tiny", 8), ("transformer", "tiny", 8))


def timer_overhead_s(n: int = 2000) -> float:
    deltas = []
    for _ in range(n):
        a = time.perf_counter()
        b = time.perf_counter()
        deltas.append(b - a)
    return statistics.median(deltas)


def reference_noise(device: str = "cpu", max_time_s: float = 1.0) -> tuple[float, float]:
    """Median and IQR/median of a fixed matmul: how steady this machine is right now."""
    a = torch.randn(192, 192, device=device)
    timing = time_step(lambda: torch.mm(a, a), device, max_time_s=max_time_s, min_samples=30, rel_ci=0.0,
                        extend=1.0)
    return timing.median, timing.iqr / timing.median


def compare_with_torch_timer(step, device: str, max_time_s: float = 0.5, rounds: int = 3) -> tuple[float, float]:
    """(gradbench median, torch.utils.benchmark adaptive_autorange median) of one step, same process.

    The two alternate in ``rounds`` short turns and each side reports the median of its turns, so
    a slow spell of the machine lands on both sides instead of deciding the comparison.
    """
    from torch.utils.benchmark import Timer

    sync = "torch.cuda.synchronize()" if str(device).startswith("cuda") else "pass"
    # Timer defaults to one thread; gradbench measures with the process's thread count.
    timer = Timer(stmt=f"step(); {sync}", globals={"step": step, "torch": torch}, num_threads=torch.get_num_threads())
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(time_step(step, device, max_time_s=max_time_s / rounds).median)
        theirs.append(timer.adaptive_autorange(min_run_time=max_time_s / rounds / 2).median)
    return statistics.median(ours), statistics.median(theirs)


def agreement(case: Case, session: Session | None = None) -> tuple[float, float]:
    """Both medians for one case's step, prepared by the pipeline as for a measurement (on the session's
    workload, built once for the cases that share it)."""
    with (session or Session()).prepared(case) as prepared:
        return compare_with_torch_timer(prepared.step, case.device, case.max_time_s)


def grid_agreement(grid: Grid, tolerance: float) -> int:
    """Agreement on every measurable case of a grid (the --quick sweep's); exit status 1 if any disagrees."""
    cases = [c for c in grid.cases() if not not_applicable(c)]
    within, skipped, session = 0, 0, Session()
    for i, case in enumerate(cases, 1):
        try:
            ours, theirs = agreement(case, session)
        except Exception as exc:  # e.g. BatchNorm with a batch of one in train mode
            print(f"[{i}/{len(cases)}] {case_label(case.identity())}: skipped ({type(exc).__name__})")
            skipped += 1
            continue
        diff = ours / theirs - 1
        within += abs(diff) <= tolerance
        print(f"[{i}/{len(cases)}] {case_label(case.identity()):48s} gradbench {ours * 1e6:10.1f} us  "
              f"torch.utils.benchmark {theirs * 1e6:10.1f} us  {diff:+6.1%}")
    compared = len(cases) - skipped
    print(f"\n{within}/{compared} cases ({within / max(compared, 1):.0%}) agree within {tolerance:.0%}")
    return 0 if within == compared else 1


def contention_monitor(device: str = "cpu") -> ContentionMonitor:
    """What other processes and the hypervisor take while the checks run, and on a GPU, other processes
    on it and its throttling (a seam for tests)."""
    return monitor_for(device)


def default_selfcheck_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run_selfcheck(tolerance: float = 0.05, devices: list[str] | None = None) -> int:
    """Print the checks on ``devices`` (default: cpu, and cuda where available); exit status 0 when quiet
    enough at this tolerance, 1 when not."""
    warnings = []
    devices = devices or default_selfcheck_devices()
    gpu = next((d for d in devices if d.startswith("cuda")), None)
    monitor = contention_monitor(gpu) if gpu else contention_monitor()
    monitor.start()
    overhead = timer_overhead_s()
    print(f"timer overhead (perf_counter)   {overhead * 1e9:8.0f} ns")
    for device in devices:
        median, noise = reference_noise(device)
        flag = ""
        if noise > tolerance:
            flag = "  WARN: noisy"
            warnings.append(f"{device}: reference workload IQR is {noise:.1%} of its median (> {tolerance:.0%})")
        print(f"noise {device:5s} (192x192 matmul)   {median * 1e6:8.1f} us median, IQR {noise:6.1%} of median{flag}")
        for model, size, batch in AGREEMENT_CASES:
            ours, theirs = agreement(Case(model, size, batch, device, max_time_s=0.5))
            diff = ours / theirs - 1
            flag = ""
            if abs(diff) > tolerance:
                flag = "  WARN"
                warnings.append(f"{device} {model}/{size} b{batch}: gradbench {ours * 1e6:.1f} us vs "
                                f"torch.utils.benchmark {theirs * 1e6:.1f} us ({diff:+.1%})")
            print(f"agreement {device:5s} {model}/{size} b{batch:<4d} gradbench {ours * 1e6:9.1f} us, "
                  f"torch.utils.benchmark {theirs * 1e6:9.1f} us ({diff:+6.1%}){flag}")
    print(f"threads: {torch.get_num_threads()}")
    seen = monitor.stop()
    share = lambda v: "unknown" if v is None else f"{v:.0%}"  # noqa: E731
    print(f"contention: other processes used {share(seen.cpu_other_share)} of the CPUs, the hypervisor stole "
          f"{share(seen.cpu_steal_share)}, over {seen.window_s:.1f} s")
    if gpu:
        unknown = lambda v: "unknown (no NVML)" if v is None else v  # noqa: E731
        print(f"gpu {gpu}: other processes {unknown(seen.gpu_other_processes)}, SM clock "
              f"{unknown(seen.gpu_sm_clock_mhz)} MHz, temperature {unknown(seen.gpu_temperature_c)} C, clock-event "
              f"reasons {unknown(seen.gpu_throttle_reasons)}")
    warnings += [f"{reason}, while the checks ran: timings now would be untrusted"
                 for reason in distrust_reasons(None, True, seen)]
    if warnings:
        print("\nWARNING: this machine may be too noisy for small differences:")
        for w in warnings:
            print(f"  - {w}")
    else:
        print("\nOK: quiet enough to benchmark at this tolerance.")
    return 1 if warnings else 0
