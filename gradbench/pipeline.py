"""The one measurement pipeline: reset state -> behaviour -> warm-up -> memory -> flops -> time.

Every front-end runs it. The sweep worker, ``run_case`` and ``explain`` call ``measure_case``; the
asv and pytest-benchmark suites call ``prepare``, which runs every pass but the timing and hands the
warm step to the harness's own timer. Its two seams are the clock (measure/timing.py) and the
memory backend (measure/memory.py), both chosen from the device and both injectable, so that
the CUDA arithmetic is tested on CPU with fakes.

Read ``prepare`` top to bottom: that is what a case is.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from .case import Case
from .compiled import (CompileWatch, NotCompiled, autocast_not_applicable, compilations, compiled_code_run,
                       compiler_settings, forward_for, last_guard_failure)
from .env import fingerprint
from .interrupts import InterruptWatch, raised_by_model
from .measure.contention import ContentionMonitor, monitor_for
from .measure.energy import energy_fields, meter_for
from .measure.memory import peak_backend
from .measure.tensors import SavedTensorsCounter, TensorMemoryTracker, gradient_bytes, storage_nbytes
from .measure.timing import Timing, clock_for, time_step
from .measure.trust import verdict_fields
from .modes import MODES, apply_mode
from .record import new_record, new_run_id
from .state import CleanState, announce, describe, expected_state
from .workload import Step, Workload, make_step


WARMUP_STEPS = 1  # the warm-up's least count of steps after prepare, which has run the step three times


@dataclass
class Prepared:
    """A case after every untimed pass: its record so far, and its warm step."""

    record: dict
    step: Callable[[], None]
    first_call_s: float | None = None  # under compile: the first call, which compiled what the mode needed


def base_record(case: Case, workload: Workload | None = None, run_id: str | None = None) -> dict:
    """A case's record before anything is measured: identity, settings and provenance."""
    record = new_record(**case.identity(), **fingerprint(), run_id=run_id or new_run_id(), seed=case.seed,
                        threads=torch.get_num_threads(), source="gradbench", max_time_s=case.max_time_s,
                        cudnn_benchmark=case.cudnn_benchmark if case.device.startswith("cuda") else None,
                        compile_cold=case.compile_cold if case.compile != "none" else None,
                        energy_sampling=case.energy_sampling if case.device.startswith("cuda") else None,
                        head=case.head if case.mode == "finetune_head" else None)
    if workload is not None:
        record.update(params=workload.params, param_bytes=workload.param_bytes,
                      global_state_warning=workload.state_warning)
    return record


def _device_scope(device: torch.device):
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


@contextlib.contextmanager
def prepare(case: Case, workload: Workload, record: dict | None = None, memory=None,
            memory_only: bool = False, before_timing: Callable[[], object] | None = None) -> Iterator[Prepared]:
    """Run a case's untimed passes with its mode applied; yield the record and the warm step.

    Everything is undone on exit: the mode, the weights a train step changed, the global state.
    ``memory``: a memory backend (default: the device's allocator, measure/memory.py).
    ``memory_only``: the reset and memory passes alone, no behaviour probes or counting (capacity
    searches many batch sizes and needs only what a step holds and peaks at).
    ``before_timing``: called, for a compiled case, when every pass but the timing is done (the contention
    monitor restarts there: inductor compiles in worker processes, on the first call and on a first
    backward, and they are not other work disturbing the step).
    """
    record = record if record is not None else base_record(case, workload)
    guard = CleanState(expected_state(case.seed, cudnn_benchmark=case.cudnn_benchmark))
    head = workload.head_for(case.head) if MODES[case.mode].trainable == "head" else None
    compiled = case.compile != "none"
    watch = CompileWatch() if compiled else contextlib.nullcontext()
    forward = forward_for(workload, case.compile, case.autocast, case.compile_cold)
    drift: list[str] = []  # the mode's own switches the model's code turned back, set again after each pass

    def mode_restored(applied) -> None:
        drift.extend(c for c in applied.drifted() if c not in drift)
    try:
        # 1. reset state: torch's switches as every case expects them; the model's changes are named
        with guard, _device_scope(workload.device), workload.parameters_restored(), \
                compiler_settings(case.compile, case.compile_cold), apply_mode(workload.model, case.mode, head) as applied, \
                watch:
            record.update(head_module=applied.head, mode_overrides=applied.overrides())
            step = make_step(workload, applied, case.step, forward)
            first_call_s = None
            if compiled:  # 1b. compile: the first call, alone and timed; it compiles what this mode needs
                if not memory_only:
                    workload.reference_outputs()  # eager, from the buffers as they are before any step
                # the behaviour probes start from the weights and buffers as they were, as in eager
                with workload.parameters_restored(), workload.buffers_restored():
                    torch.manual_seed(case.seed)
                    first_call_s = clock_for(workload.device).block(step.run, 1)
                    frames, graphs = compiled_code_run(step.run)  # and is compiled code what runs now?
                step.settle()
                mode_restored(applied)
                if not graphs:
                    raise NotCompiled(f"no compiled graph runs in the {case.step} of {case.model} in mode "
                                      f"{case.mode!r}: dynamo skipped its forward, which runs eager "
                                      "(torch._dynamo.explain says why)")
                record.update(compiled_graphs=graphs, graph_breaks=max(0, frames - 1))
            # 2. behaviour: what the mode does to a forward, observed in seeded probe forwards
            if not memory_only:
                record.update(workload.behaviour(applied, forward, (case.compile, case.autocast)))
                mode_restored(applied)
            torch.manual_seed(case.seed)
            # 3. warm-up and memory: the backend runs the step once (lazy initialisation, such as oneDNN
            #    primitives or cuDNN autotuning, is not the step's cost), settles, and measures the
            #    second step's peak above that baseline, with no dispatch mode active
            record.update(_allocator_peak(case, workload, step, memory or peak_backend(workload.device)))
            mode_restored(applied)
            # 4. counting, in one instrumented step: the tensor-level cross-check of the peak, the bytes
            #    saved for backward and a train step's flops (a forward's are counted once per workload)
            if not memory_only:
                eager = make_step(workload, applied, case.step, forward_for(workload, "none", case.autocast)) \
                    if compiled else None
                saved = SavedTensorsCounter(workload.held_tensors())
                counted = make_step(workload, applied, case.step, lambda: saved.run(forward))
                record.update(_counted_step(case, workload, counted, saved, eager))
                mode_restored(applied)
            torch.manual_seed(case.seed)
            if compiled:
                record.update(watch.fields())  # and again at exit, the harness's timing included
                if before_timing is not None:
                    before_timing()
            yield Prepared(record, step.run, first_call_s)  # 5. time: the caller's clock (measure_case, or a harness)
            mode_restored(applied)
    finally:
        if compiled and hasattr(watch, "_events"):
            record.update(watch.fields())
        inside = workload.forward_state_changes(case.mode)
        warnings = [describe(f"model {case.model!r}", f"inside its forward in mode {case.mode!r}", inside),
                    describe(f"model {case.model!r}", f"while running mode {case.mode!r}",
                             [c for c in guard.changes if c not in inside]),
                    f"model {case.model!r} undid mode {case.mode!r} in its own code: {'; '.join(drift)} (set "
                    "again after each pass; a pass it undid measured something else)" if drift else None]
        announce(warnings[1])  # the first was announced when the forward was observed
        announce(warnings[2])
        record["global_state_warning"] = "; ".join(w for w in (record.get("global_state_warning"), *warnings)
                                                   if w) or None


def _allocator_peak(case: Case, workload: Workload, step: Step, backend) -> dict:
    held: dict[str, int] = {}

    def settle():
        step.settle()
        held["bytes"] = storage_nbytes([*workload.held_tensors(), *step.state_tensors()])

    peak = backend.measure(step.run, settle)
    out = dict(peak_bytes=peak.peak_bytes, peak_bytes_source=peak.source, held_bytes=held["bytes"],
               cuda_max_allocated_bytes=peak.cuda_max_allocated_bytes,
               cuda_max_reserved_bytes=peak.cuda_max_reserved_bytes, requested_peak_bytes=peak.requested_peak_bytes,
               grad_bytes=0)
    if case.step == "train_step":
        out["grad_bytes"] = gradient_bytes(workload.model)
        out["grads_computed"] = sum(1 for p in workload.model.parameters() if p.grad is not None)
    return out


def _counted_step(case: Case, workload: Workload, step: Step, saved: SavedTensorsCounter,
                  eager: Step | None = None) -> dict:
    """The tracker is innermost: it passes every operator on to the flop counter below it. ``step`` runs its
    forward through ``saved``, which takes the bytes held for backward at the forward's return.

    ``eager``: under compile, the same step run eagerly. The compiled graph's kernels are opaque to the
    dispatch-level tracker and flop counter, so the tracker is not run (null) and a train step's flops
    are counted on the eager step (compiling changes kernels, not the arithmetic counted); the bytes
    saved for backward are what the compiled graph saves.
    """
    step.settle()
    tracker = TensorMemoryTracker() if eager is None else None
    flops = FlopCounterMode(display=False) if case.step == "train_step" else None
    with (flops if eager is None else None) or contextlib.nullcontext(), tracker or contextlib.nullcontext():
        step.run()
    if flops and eager is not None:
        step.settle()
        with flops:
            eager.run()
        eager.settle()
    return dict(tracked_peak_bytes=tracker.peak if tracker else None, saved_bytes=saved.nbytes,
                flops=int(flops.get_total_flops()) if flops else workload.forward_flops())


def timing_fields(timing: Timing) -> dict:
    return dict(
        time_median_s=timing.median, time_iqr_s=timing.iqr, time_ci_low_s=timing.ci[0],
        time_ci_high_s=timing.ci[1], n_samples=timing.n_samples, samples_s=timing.samples_s,
        steps_per_sample=timing.steps_per_sample, time_converged=timing.converged,
        time_measured_s=timing.measured_s,
    )


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def measure_case(case: Case, workload: Workload, run_id: str | None = None, clock=None, memory=None,
                 monitor: ContentionMonitor | None = None) -> dict:
    """Measure one validated case on a prepared workload; failures become records, not exceptions.

    ``monitor`` watches the machine from the case's first pass to its last timed block (a window of
    a few hundred milliseconds at least, long enough for /proc's 10 ms ticks): what other work used
    decides, with the median's precision, whether the time is trusted (measure/trust.py).
    """
    mode = MODES[case.mode]
    record = base_record(case, workload, run_id)
    if case.step == "train_step" and not mode.graph_possible(workload.model):
        why = "no parameter of the model as built requires grad" if mode.trainable == "as_built" else \
            "it records no autograd graph"
        record.update(status="not_applicable", error=f"mode {mode.name!r}: {why}, so there is no train step")
        return record
    if autocast_not_applicable(case.autocast, case.dtype):
        record.update(status="not_applicable", error=autocast_not_applicable(case.autocast, case.dtype))
        return record
    began = time.perf_counter()
    monitor = (monitor or monitor_for(workload.device)).start()
    meter = meter_for(workload.device, monitor.gpu, case.energy_sampling)  # energy over the timed blocks (CUDA)
    interrupts = InterruptWatch()
    try:
        with interrupts, prepare(case, workload, record, memory, before_timing=monitor.start) as prepared:
            # 5. time: warm-up, then samples until the median is known or the cap is reached
            before = compilations()
            timing = time_step(prepared.step, workload.device, max_time_s=case.max_time_s, clock=clock,
                               warmup_steps=WARMUP_STEPS, window=meter)
            recompiled_while_timed = compilations() - before
        contention = monitor.stop()
        record.update(energy_fields(meter.reading if meter else None, timing.n_samples * timing.steps_per_sample,
                                    case.batch_size))
        if prepared.first_call_s is not None:
            record["compile_time_s"] = prepared.first_call_s - timing.median
        record.update(timing_fields(timing), **contention.fields(),
                      **verdict_fields(timing.rel_halfwidth, timing.converged, contention))
        record["flops_per_s"] = record["flops"] / timing.median if record["flops"] and timing.median > 0 else None
        if recompiled_while_timed:  # the samples hold compilations: a guard fails on every step or so
            record.update(time_trusted=False, time_distrust="; ".join(filter(None, (
                f"compiled {recompiled_while_timed} time(s) while timed, so the samples include compilation "
                f"(a guard failed: {last_guard_failure() or 'not named'})", record.get("time_distrust")))))
        record["status"] = "ok"
    except NotCompiled as exc:
        record.update(status="not_applicable", error=str(exc))
    except (KeyboardInterrupt, SystemExit) as exc:
        if interrupts.by_signal(exc):  # the user's Ctrl-C, or SIGTERM: stop
            raise
        record.update(status="error", error=raised_by_model(exc))
    except Exception as exc:  # a failing case is a result: record it and let the sweep go on
        reason = last_guard_failure() if type(exc).__name__ == "FailOnRecompileLimitHit" else None
        head = f" (finetune_head trained {record['head_module']!r})" if record.get("head_module") else ""
        record.update(status="oom" if is_oom(exc) else "error", error=f"{type(exc).__name__}: {exc}".strip()
                      + (f" (the last guard that failed: {reason})" if reason else "") + head)
        if workload.device.type == "cuda":
            torch.cuda.empty_cache()
    record["measure_wall_s"] = time.perf_counter() - began
    return record


def run_case(
    model: str = "mlp", size: str = "small", batch_size: int = 32, device: str = "cpu",
    dtype: str = "float32", mode: str = "eval_no_grad", step: str = "forward", seed: int = 0,
    max_time_s: float = 2.0, cudnn_benchmark: bool = False, workload: Workload | None = None,
    run_id: str | None = None, compile: str = "none", autocast: str = "none", compile_cold: bool = False,
    energy_sampling: bool = False, head: str | None = None,
) -> dict:
    """Measure one case and return its record (a dict with every schema field, gradbench.record).

    Bad arguments raise ValueError naming the valid values; a case that fails while running
    returns a record with status error or oom instead.
    """
    case = Case(model, size, batch_size, device, dtype, mode, step, seed, max_time_s, cudnn_benchmark,
                compile, autocast, compile_cold, energy_sampling, head).validate()
    if workload is None or workload.key != case.workload_key:
        interrupts = InterruptWatch()
        try:
            with interrupts:
                workload = Workload(*case.workload_key)
        except ValueError:
            raise
        except Exception as exc:  # the model or its batch could not be built (out of memory, say): a result
            return workload_failure_record(case, run_id or new_run_id(), "oom" if is_oom(exc) else "error",
                                           f"{type(exc).__name__}: {exc}".strip())
        except (KeyboardInterrupt, SystemExit) as exc:  # from the model's code (make_input's), or a signal
            if interrupts.by_signal(exc):
                raise
            return workload_failure_record(case, run_id or new_run_id(), "error", raised_by_model(exc))
    return measure_case(case, workload, run_id)


def workload_failure_record(case: Case, run_id: str, status: str, message: str) -> dict:
    """The record of a case whose workload could not be built, or whose worker died or overran."""
    return {**base_record(case, run_id=run_id), "status": status, "error": message}
