"""The one measurement pipeline: reset state -> behaviour -> warm-up -> memory -> flops -> time.

Every front end runs it through a Session (session.py), which decides what a failure means: the sweep
worker, ``run_case`` and ``explain`` measure with ``measure_into``; capacity, selfcheck and the asv and
pytest-benchmark suites call ``prepare``, which runs every pass but the timing and hands the warm step
to their own timer (or only weighs it). Its two seams are the clock (measure/timing.py) and the
memory backend (measure/memory.py), both chosen from the device and both injectable, so that
the CUDA arithmetic is tested on CPU with fakes.

Read ``prepare`` top to bottom: that is what a case is.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from .case import Case
from .compiled import (CompileWatch, NotCompiled, autocast_entry, compilations, compiled_code_run, compiler_settings,
                       forward_for, last_guard_failure)
from .env import fingerprint
from .interrupts import InterruptWatch
from .measure.contention import ContentionMonitor, monitor_for
from .measure.eager_autocast import above_eager_autocast
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
                        head=case.head if case.mode == "finetune_head" else None,
                        case_memory_budget_bytes=case.memory_budget)
    if workload is not None:
        record.update(params=workload.params, param_bytes=workload.param_bytes,
                      global_state_warning=workload.state_warning)
    return record


def _device_scope(device: torch.device):
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


@contextlib.contextmanager
def prepare(case: Case, workload: Workload, record: dict | None = None, memory=None,
            memory_only: bool = False, before_timing: Callable[[], object] | None = None,
            untimed: bool = True, probes: bool = True) -> Iterator[Prepared]:
    """Run a case's untimed passes with its mode applied; yield the record and the warm step.

    Everything is undone on exit: the mode, the weights a train step changed, the global state.
    ``memory``: a memory backend (default: the device's allocator, measure/memory.py).
    ``memory_only``: the reset and memory passes alone, no behaviour probes or counting (capacity
    searches many batch sizes and needs only what a step holds and peaks at).
    ``probes``: False: no behaviour probes and no flop count, one memory pass that also counts saved bytes
    (held, peak and saved bytes: a prediction on fake tensors, whose probes would compare values that do not
    exist, and whose steps cost seconds).
    ``untimed``: False: no untimed pass at all, the step only set up to be timed (an A/B's later rounds, which
    observed the case's memory and behaviour in their first).
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
    try:
        # 1. reset state: torch's switches as every case expects them; the model's changes are named
        with guard, _device_scope(workload.device), workload.parameters_restored(), \
                compiler_settings(case.compile, case.compile_cold), apply_mode(workload.model, case.mode, head) as applied, \
                watch:
            record.update(head_module=applied.head, mode_overrides=applied.overrides())
            passes = _Passes(case, workload, applied, forward, record, drift)
            first_call_s = passes.compile_first(memory_only) if compiled else None
            if untimed:
                passes.untimed(memory or peak_backend(workload.device), memory_only, probes)
            if compiled:
                record.update(watch.fields())  # and again at exit, the harness's timing included
                if before_timing is not None:
                    before_timing()
            yield Prepared(record, passes.step.run, first_call_s)  # 5. time: the caller's clock (or a harness's)
            passes.mode_restored()
    finally:
        if compiled and hasattr(watch, "_events"):
            record.update(watch.fields())
        _state_warnings(case, workload, guard, drift, record)


class _Passes:
    """The untimed passes of one case, on its applied mode; after each, the mode's own switches that the
    model's code turned back are noted (``drift``) and set again."""

    def __init__(self, case: Case, workload: Workload, applied, forward, record: dict, drift: list[str]):
        self.case, self.workload, self.applied, self.forward = case, workload, applied, forward
        self.record, self.drift = record, drift
        self.step = make_step(workload, applied, case.step, forward)

    def mode_restored(self) -> None:
        self.drift.extend(c for c in self.applied.drifted() if c not in self.drift)

    def compile_first(self, memory_only: bool) -> float:
        """1b. compile: the first call, alone and timed; it compiles what this mode needs. Raises
        NotCompiled when no compiled graph runs in the step."""
        case, workload = self.case, self.workload
        if not memory_only:
            workload.reference_outputs()  # eager, from the buffers as they are before any step
        # the behaviour probes start from the weights and buffers as they were, as in eager
        with workload.parameters_restored(), workload.buffers_restored():
            torch.manual_seed(case.seed)
            first_call_s = clock_for(workload.device).block(self.step.run, 1)
            frames, graphs = compiled_code_run(self.step.run)  # and is compiled code what runs now?
        self.step.settle()
        self.mode_restored()
        if not graphs:
            raise NotCompiled(f"no compiled graph runs in the {case.step} of {case.model} in mode "
                              f"{case.mode!r}: dynamo skipped its forward, which runs eager "
                              "(torch._dynamo.explain says why)")
        self.record.update(compiled_graphs=graphs, graph_breaks=max(0, frames - 1))
        return first_call_s

    def untimed(self, backend, memory_only: bool, probes: bool = True) -> None:
        case, workload, record = self.case, self.workload, self.record
        # 2. behaviour: what the mode does to a forward, observed in seeded probe forwards
        if not memory_only and probes:
            record.update(workload.behaviour(self.applied, self.forward, (case.compile, case.autocast)))
            self.mode_restored()
        torch.manual_seed(case.seed)
        if not probes and not memory_only:
            # a prediction (fake tensors): one step gives peak and saved bytes, the memory pass's own step run
            # through the saved-tensor counter (its hooks keep a detached view, which allocates nothing); a
            # step of a large model on fake tensors costs seconds
            saved = SavedTensorsCounter(workload.held_tensors())
            counted = make_step(workload, self.applied, case.step, lambda: saved.run(self.forward))
            record.update(_allocator_peak(case, workload, counted, backend), saved_bytes=saved.nbytes,
                          tracked_peak_bytes=None, flops=None)
            self.mode_restored()
            torch.manual_seed(case.seed)
            return
        # 3. warm-up and memory: the backend runs the step once (lazy initialisation, such as oneDNN
        #    primitives or cuDNN autotuning, is not the step's cost), settles, and measures the
        #    second step's peak above that baseline, with no dispatch mode active
        record.update(_allocator_peak(case, workload, self.step, backend))
        self.mode_restored()
        # 4. counting, in one instrumented step: the tensor-level cross-check of the peak, the bytes
        #    saved for backward and a train step's flops (a forward's are counted once per workload)
        if not memory_only:
            eager = make_step(workload, self.applied, case.step, forward_for(workload, "none", case.autocast)) \
                if case.compile != "none" else None
            saved = SavedTensorsCounter(workload.held_tensors())
            counted = make_step(workload, self.applied, case.step, lambda: saved.run(self.forward))
            record.update(_counted_step(case, workload, counted, saved, eager or self.step,
                                        compiled=eager is not None))
            self.mode_restored()
        torch.manual_seed(case.seed)


def _state_warnings(case: Case, workload: Workload, guard: CleanState, drift: list[str], record: dict) -> None:
    """What the model's code changed of torch's global state or of the mode itself, named on the record."""
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


def _counted_step(case: Case, workload: Workload, step: Step, saved: SavedTensorsCounter, plain: Step,
                  compiled: bool = False) -> dict:
    """One step under the tracker, whose forward runs through ``saved`` (the bytes held for backward at the
    forward's return); a train step's flops counted in ``plain`` (the step without the saved-tensor hooks),
    so that no flop counter is active while the saved bytes are taken.

    ``compiled``: ``plain`` is the same step run eagerly. The compiled graph's kernels are opaque to the
    dispatch-level tracker and flop counter, so the tracker is not run (null) and a train step's flops
    are counted on the eager step (compiling changes kernels, not the arithmetic counted); the bytes
    saved for backward are what the compiled graph saves.
    """
    step.settle()
    tracker = TensorMemoryTracker(autocast=autocast_entry(workload.device, case.autocast)) if not compiled else None
    with tracker or contextlib.nullcontext():
        step.run()
    # the saved bytes are taken with no flop counter active: its module hooks add autograd nodes that keep
    # tensors of their own, which the count took as the model's (transformers' BERT, eval train step: 2,240,000
    # bytes against 2,173,440 without it, and against its forward step's)
    saved_bytes = saved.nbytes
    flops = None
    if case.step == "train_step":
        flops = FlopCounterMode(display=False)
        step.settle()
        with above_eager_autocast(flops, autocast_entry(workload.device, case.autocast)):
            plain.run()
        plain.settle()
    return dict(tracked_peak_bytes=tracker.peak if tracker else None, saved_bytes=saved_bytes,
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


def measure_into(record: dict, case: Case, workload: Workload, interrupts: InterruptWatch, clock=None, memory=None,
                 monitor: ContentionMonitor | None = None, timed: bool = True) -> None:
    """Measure one applicable case on its workload into ``record``; a failure raises (session.py decides
    what it means). ``interrupts`` is entered around the model's code. ``timed`` False: every pass but the
    timing, whose fields stay empty (an A/B's first rounds, which time the case in its own alternated blocks).

    ``monitor`` watches the machine from the case's first pass to its last timed block (a window of
    a few hundred milliseconds at least, long enough for /proc's 10 ms ticks): what other work used
    decides, with the median's precision, whether the time is trusted (measure/trust.py).
    """
    if not timed:
        with interrupts, prepare(case, workload, record, memory):
            pass
        return
    monitor = (monitor or monitor_for(workload.device)).start()
    meter = meter_for(workload.device, monitor.gpu, case.energy_sampling)  # energy over the timed blocks (CUDA)
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
