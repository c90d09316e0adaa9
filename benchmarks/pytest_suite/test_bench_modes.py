"""pytest-benchmark: each mode's forward and train step, with gradbench's memory and behaviour in extra_info.

Run: pytest benchmarks --benchmark-json out.json [--gradbench-grid quick|default|full]
Benchmarks are grouped by case (model/size/batch/device/dtype/step), so each group compares modes.
extra_info carries the record gradbench's pipeline made in preparation (memory, behaviour, flops),
and the trust verdict on pytest-benchmark's own rounds: the contention seen while they ran, and the
precision of their median (measure/trust.py), so that `gradbench compare` knows which to judge.
"""
import pytest

from gradbench.compiled import compilations, last_guard_failure
from gradbench.measure.contention import monitor_for
from gradbench.measure.stats import samples_rel_halfwidth
from gradbench.measure.trust import verdict_fields
from gradbench.record import case_label

ROUNDS_TIME_S = 0.3  # about this much timed work per benchmark


def _rounds(case) -> int:
    """Enough rounds of a block of steps for about ROUNDS_TIME_S of work, from the case's warm-up."""
    return max(5, min(1000, int(ROUNDS_TIME_S / max(case.per_step_s * case.steps_per_block, 1e-6))))


def _extra_info(case) -> dict:
    """The pipeline's record less its timing (pytest-benchmark times), flags as 0/1 (null: no such layer)."""
    from gradbench.record import finite_or_none
    from gradbench.schema import SCHEMA

    return {k: int(v) if isinstance(v, bool) else finite_or_none(v) for k, v in case.record.items()
            if SCHEMA[k]["group"] != "time"}


@pytest.mark.parametrize("step", ["forward", "train_step"])
def test_mode(benchmark, prepared, gradbench_case, step):
    model, size, batch_size, device, dtype, mode, compile, autocast = gradbench_case
    case = prepared(model, size, batch_size, device, mode, step, dtype, compile=compile, autocast=autocast)
    benchmark.group = case_label(case.record, omit=("mode",))
    benchmark.name = mode
    benchmark.extra_info.update(_extra_info(case))
    monitor, compiled_before = monitor_for(device).start(), compilations()
    # warmed in preparation by gradbench's rule (harness.BenchmarkCase): no warm-up rounds of its own;
    # a round is a block of steps as gradbench samples them (>= 1 ms), which pytest-benchmark counts per
    # step (iterations). On CUDA each step synchronises: pytest-benchmark has no hook at a round's end.
    try:
        benchmark.pedantic(case.step, rounds=_rounds(case), iterations=case.steps_per_block, warmup_rounds=0)
    except Exception as exc:
        if type(exc).__name__ != "FailOnRecompileLimitHit":
            raise
        pytest.fail(f"recompiled past dynamo's limit while timed (the last guard that failed: "
                    f"{last_guard_failure()})", pytrace=False)
    benchmark.extra_info.update(_trust(monitor.stop(), benchmark.stats.stats.data))
    recompiled = compilations() - compiled_before
    if recompiled:  # the rounds hold compilations (a guard failing on every step or so): as gradbench run says
        benchmark.extra_info.update(time_trusted=False, time_distrust="; ".join(filter(None, (
            f"compiled {recompiled} time(s) while timed, so the samples include compilation (a guard failed: "
            f"{last_guard_failure() or 'not named'})",
            benchmark.extra_info.get("time_distrust")))))


def _trust(contention, samples) -> dict:
    return {**contention.fields(), **verdict_fields(samples_rel_halfwidth(samples), False, contention)}
