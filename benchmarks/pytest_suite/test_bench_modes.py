"""pytest-benchmark: each mode's forward and train step, with gradbench's memory and behaviour in extra_info.

Run: pytest benchmarks --benchmark-json out.json [--gradbench-grid quick|default|full]
Benchmarks are grouped by case (model/size/batch/device/dtype/step), so each group compares modes.
"""
import time

import pytest

ROUNDS_TIME_S = 0.3  # about this much timed work per benchmark


def _rounds(step) -> int:
    """Enough rounds for about ROUNDS_TIME_S of work: a one-step calibration, not a measurement."""
    step()
    started = time.perf_counter()
    step()
    return max(5, min(1000, int(ROUNDS_TIME_S / max(time.perf_counter() - started, 1e-6))))


def _extra_info(case) -> dict:
    memory = case.memory()
    behaviour = case.behaviour()
    info = dict(case.identity)
    info.update({k: memory[k] for k in ("peak_bytes", "saved_bytes", "cuda_max_allocated_bytes",
                                        "cuda_max_reserved_bytes")})
    for key, value in behaviour.items():  # flags as 0/1 (null where the model has no such layer)
        info[key] = int(value) if isinstance(value, bool) else value
    info["params"] = case.workload.params
    return info


@pytest.mark.parametrize("step", ["forward", "train_step"])
def test_mode(benchmark, prepared, gradbench_case, step):
    model, size, batch_size, device, dtype, mode = gradbench_case
    case = prepared(model, size, batch_size, device, mode, step, dtype)
    benchmark.group = f"{model}/{size} b{batch_size} {device} {dtype} {step}"
    benchmark.name = mode
    benchmark.extra_info.update(_extra_info(case))
    benchmark.pedantic(case.step, rounds=_rounds(case.step), iterations=1, warmup_rounds=2)
