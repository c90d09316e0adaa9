"""The verdict on a timing: trusted, or untrusted with the reasons, from its precision and contention.

A median is distrusted when it is imprecise (sampling ended at its cap with the 95% interval wider
than +-10% of the median) or when the machine was disturbed while it was taken: other processes
used more than 10% of the CPUs, this process's threads waited for a CPU more than 10% of the time
they ran, the hypervisor stole more than 5%, another process computed on the
same GPU, or the GPU slowed itself for heat or a hardware brake. A GPU at its software power cap is
working as designed under load; that is recorded in gpu_throttle_reasons but not distrusted.
Converging to +-2% remains the sampling goal (measure/timing.py); it is not the line for trust.
"""
from __future__ import annotations

from .contention import Contention

PRECISION_LIMIT = 0.10
CPU_OTHER_LIMIT = 0.10
CPU_STEAL_LIMIT = 0.05
CPU_WAIT_LIMIT = 0.10
DISTRUSTED_THROTTLE = ("hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


def distrust_reasons(rel_halfwidth: float | None, converged: bool, contention: Contention | None) -> list[str]:
    """Why a timing cannot be trusted; empty when it can."""
    reasons = []
    if not converged and (rel_halfwidth is None or rel_halfwidth > PRECISION_LIMIT):
        width = "unknown" if rel_halfwidth is None else f"+-{rel_halfwidth:.0%}"
        reasons.append(f"imprecise: the median's 95% interval is {width} at the time cap "
                       f"(limit +-{PRECISION_LIMIT:.0%})")
    if contention is None:
        return reasons
    c = contention
    if c.cpu_other_share is not None and c.cpu_other_share > CPU_OTHER_LIMIT:
        reasons.append(f"other processes used {c.cpu_other_share:.0%} of the CPUs (limit {CPU_OTHER_LIMIT:.0%})")
    if c.cpu_wait_share is not None and c.cpu_wait_share > CPU_WAIT_LIMIT:
        reasons.append(f"this process's threads waited for a CPU {c.cpu_wait_share:.0%} of the time they ran "
                       f"(limit {CPU_WAIT_LIMIT:.0%})")
    if c.cpu_steal_share is not None and c.cpu_steal_share > CPU_STEAL_LIMIT:
        reasons.append(f"the hypervisor stole {c.cpu_steal_share:.0%} of the CPUs (limit {CPU_STEAL_LIMIT:.0%})")
    if c.gpu_other_processes:
        reasons.append(f"{c.gpu_other_processes} other process(es) computed on the GPU")
    throttled = [r for r in c.gpu_throttle_reasons or () if r in DISTRUSTED_THROTTLE]
    if throttled:
        reasons.append(f"the GPU throttled: {', '.join(throttled)}")
    return reasons


def verdict_fields(rel_halfwidth: float | None, converged: bool, contention: Contention | None) -> dict:
    """time_trusted and time_distrust for a record."""
    reasons = distrust_reasons(rel_halfwidth, converged, contention)
    return dict(time_trusted=not reasons, time_distrust="; ".join(reasons) or None)
