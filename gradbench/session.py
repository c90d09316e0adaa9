"""One process's measuring, for every front end: the sweep's worker, ``run_case``, explain, capacity,
selfcheck and both harnesses measure through a Session.

It owns what they would otherwise each repeat: the workload cache (a model is built once for the cases
that share it), the not-applicable policy (a case that cannot run by design is a result with its
reason, not a failure) and the failure policy (a workload that cannot be built, a case that raises, runs
out of memory or is ended by the model's own KeyboardInterrupt or sys.exit: a record with its status
and message; the user's Ctrl-C or a SIGTERM still stops). The measuring itself is pipeline.py's.
"""
from __future__ import annotations

import contextlib
import gc
import time
import traceback
from typing import Callable, ContextManager, Iterator

import torch

from . import fit, pipeline
from .catalog import weights
from .case import Case
from .compiled import NotCompiled, autocast_not_applicable, cuda_only, last_guard_failure
from .interrupts import InterruptWatch, raised_by_model
from .measure.tensors import storage_nbytes
from .modes import MODES
from .record import Record, new_run_id
from .workload import Workload


def not_applicable(case: Case, model: torch.nn.Module | None = None) -> str | None:
    """Why ``case`` cannot run by design (None: it can). ``model``: the model as built, which mode as_built
    asks whether any parameter requires grad; without it, what the mode alone says."""
    mode = MODES.get(case.mode)
    if mode is None:  # not a mode at all: Case.validate names the valid ones
        return None
    graph = mode.graph_possible(model) if model is not None else mode.records_graph
    if case.step == "train_step" and not graph:
        why = "no parameter of the model as built requires grad" if mode.trainable == "as_built" else \
            "it records no autograd graph"
        return f"mode {mode.name!r}: {why}, so there is no train step"
    if autocast_not_applicable(case.autocast, case.dtype):
        return autocast_not_applicable(case.autocast, case.dtype)
    if not case.device.startswith("cuda") and cuda_only(case.compile, case.autocast):
        return f"compile {case.compile!r} with autocast {case.autocast!r} needs a CUDA device"
    return None


class StoppedByModel(RuntimeError):
    """The model's own code raised KeyboardInterrupt or called sys.exit() (not a signal): its case failed."""


def failure_record(case: Case, run_id: str, status: str, message: str, trace: str | None = None) -> Record:
    """The record of a case that did not run: its workload could not be built, or its worker died or
    overran, or its Slurm task ended without it."""
    return Record(pipeline.base_record(case, run_id=run_id), status=status, error=message,
                  **({"traceback": trace} if trace else {}))


def failed(exc: BaseException) -> tuple[str, str]:
    """(status, message) of an exception a case or its workload raised."""
    return ("oom" if pipeline.is_oom(exc) else "error"), f"{type(exc).__name__}: {exc}".strip()


class Session:
    """Measures cases in this process. ``keep_workloads``: keep every workload built (a harness's process
    times many benchmarks of few models); otherwise only the last one is alive, so that one model's
    memory is freed before the next is built. ``import_scope(model)`` and ``building(workload_key)``:
    contexts around a user model's first import and around a workload's build (the sweep's worker tells
    its manager, who then knows what to blame if the process dies there). ``raise_bad_values``: a
    ValueError while building is the caller's bad input (``run_case``), not a result."""

    def __init__(self, run_id: str | None = None, *, keep_workloads: bool = False,
                 import_scope: Callable[[str], ContextManager] = contextlib.nullcontext,
                 building: Callable[[tuple], ContextManager] = contextlib.nullcontext,
                 raise_bad_values: bool = False):
        self.run_id = run_id or new_run_id()
        self.keep_workloads = keep_workloads
        self.import_scope, self.building, self.raise_bad_values = import_scope, building, raise_bad_values
        self._workloads: dict[tuple, Workload] = {}
        self.last_model: str | None = None  # whose code ran last here: the suspect if global state has changed

    def workload(self, case: Case) -> Workload:
        """The case's workload, built once; a failure to build raises."""
        key = case.workload_key
        if key not in self._workloads:
            if not self.keep_workloads:
                self._workloads.clear()
            self.last_model = case.model
            with self.building(key):
                self._workloads[key] = Workload(*key, import_scope=self.import_scope)
        return self._workloads[key]

    def adopt(self, workload: Workload) -> None:
        """Measure on a workload the caller built (``run_case(workload=...)``)."""
        if not self.keep_workloads:
            self._workloads.clear()
        self._workloads[workload.key] = workload

    def release(self) -> None:
        """Hold no model: between a worker's batches, and when a front end is done."""
        self._workloads.clear()
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def failure(self, case: Case, status: str, message: str, trace: str | None = None) -> Record:
        return failure_record(case, self.run_id, status, message, trace)

    def measure(self, case: Case, clock=None, memory=None, monitor=None, timed: bool = True) -> Record:
        """One validated case's record, whatever happens to it; only the user's Ctrl-C or SIGTERM raise.
        ``timed`` False: every pass but the timing (pipeline.measure_into)."""
        refused = self.refused(case)
        if refused is not None:
            return refused
        interrupts = InterruptWatch()
        try:
            with interrupts:
                workload = self.workload(case)
        except Exception as exc:  # the workload could not be built: every case of it says why
            if self.raise_bad_values and isinstance(exc, ValueError):
                raise
            return self.failure(case, *failed(exc), traceback.format_exc(limit=5))
        except (KeyboardInterrupt, SystemExit) as exc:  # from the model's code (make_input's), or a signal
            if interrupts.by_signal(exc):
                raise
            return self.failure(case, "error", raised_by_model(exc), traceback.format_exc(limit=5))
        return self.measure_on(case, workload, clock, memory, monitor, timed)

    def refused(self, case: Case) -> Record | None:
        """The not_applicable record of a built-in model's case that cannot fit (fit.py), before its workload
        is built; None when it may run. What this process holds and building the case frees (the previous
        workload, unless workloads are kept) or reuses (its own, already built) counts as room."""
        kept = [w for key, w in self._workloads.items() if not self.keep_workloads or key == case.workload_key]
        own = storage_nbytes(t for w in kept if w.device.type == "cpu" for t in w.held_tensors())
        reason = fit.refusal(case, own_bytes=own)
        if reason is None:
            return None
        mode = MODES.get(case.mode)
        if mode is not None and mode.trainable != "as_built":  # a reason by design comes first: it holds anywhere
            reason = not_applicable(case) or reason
        params, param_bytes = weights(case.model, case.size, case.dtype, case.seq_len,
                                      case.image_size)
        return Record(pipeline.base_record(case, run_id=self.run_id), status="not_applicable", error=reason,
                      params=params, param_bytes=param_bytes)

    def measure_on(self, case: Case, workload: Workload, clock=None, memory=None, monitor=None,
                   timed: bool = True) -> Record:
        """The case on a built workload: not applicable, measured, or failed with its message; frozen once
        the case is over (the pipeline fills a draft while it runs)."""
        record = pipeline.base_record(case, workload, self.run_id)
        reason = not_applicable(case, workload.model)
        if reason:
            return Record(record, status="not_applicable", error=reason)
        began = time.perf_counter()
        interrupts = InterruptWatch()
        try:
            pipeline.measure_into(record, case, workload, interrupts, clock=clock, memory=memory, monitor=monitor,
                                  timed=timed)
            record["status"] = "ok"
        except NotCompiled as exc:
            record.update(status="not_applicable", error=str(exc))
        except (KeyboardInterrupt, SystemExit) as exc:
            if interrupts.by_signal(exc):  # the user's Ctrl-C, or SIGTERM: stop
                raise
            record.update(status="error", error=raised_by_model(exc))
        except Exception as exc:  # a failing case is a result: record it and let the sweep go on
            record.update(zip(("status", "error"), _case_failure(exc, record)))
            if workload.device.type == "cuda":
                torch.cuda.empty_cache()
        record["measure_wall_s"] = time.perf_counter() - began
        return Record(record)

    @contextlib.contextmanager
    def prepared(self, case: Case, record: dict | None = None, memory_only: bool = False,
                 workload: Workload | None = None, untimed: bool = True) -> Iterator["pipeline.Prepared"]:
        """Every pass of the case but the timing, for a front end that times (or only weighs) it itself;
        failures raise, and a KeyboardInterrupt or sys.exit() the model's code raises while the case is
        built and prepared is StoppedByModel, a failure like any other (the user's Ctrl-C still stops)."""
        interrupts = InterruptWatch()
        with contextlib.ExitStack() as stack:
            try:
                with interrupts:  # the set-up only: a harness keeps the case open while it times
                    workload = workload or self.workload(case)
                    record = record if record is not None else pipeline.base_record(case, workload, self.run_id)
                    prepared = stack.enter_context(pipeline.prepare(case, workload, record, memory_only=memory_only,
                                                                    untimed=untimed))
            except (KeyboardInterrupt, SystemExit) as exc:
                if interrupts.by_signal(exc):
                    raise
                raise StoppedByModel(raised_by_model(exc)) from None
            yield prepared


# Refusals PyTorch makes by design, observed as it raises them: the case is not_applicable, with the reason
# and PyTorch's own words, not a failure (issue 26: the default sweep's batch 1 ended in errors).
REFUSED_BY_DESIGN = (
    (ValueError, "Expected more than 1 value per channel when training",
     "BatchNorm normalises over the batch while the model is in train mode, and PyTorch refuses a batch of one"),
)


def _case_failure(exc: Exception, record: dict) -> tuple[str, str]:
    """(status, message) of a case that raised while measured, with what helps to read it: the guard that
    failed when the compiler gave up recompiling, and the module finetune_head trained. A refusal PyTorch
    makes by design is not_applicable."""
    status, message = failed(exc)
    for kind, words, why in REFUSED_BY_DESIGN:
        if isinstance(exc, kind) and words in str(exc):
            return "not_applicable", f"{why} ({message})"
    reason = last_guard_failure() if type(exc).__name__ == "FailOnRecompileLimitHit" else None
    head = f" (finetune_head trained {record['head_module']!r})" if record.get("head_module") else ""
    return status, message + (f" (the last guard that failed: {reason})" if reason else "") + head


def run_case(
    model: str = "mlp", size: str = "small", batch_size: int = 32, device: str = "cpu",
    dtype: str = "float32", mode: str = "eval_no_grad", step: str = "forward", seed: int = 0,
    max_time_s: float = 2.0, cudnn_benchmark: bool = False, workload: Workload | None = None,
    run_id: str | None = None, compile: str = "none", autocast: str = "none", compile_cold: bool = False,
    energy_sampling: bool = False, head: str | None = None, seq_len: int | None = None,
    image_size: int | None = None,
) -> Record:
    """Measure one case and return its record (a frozen Record: every schema field, gradbench.record).

    Bad arguments raise ValueError naming the valid values; a case that fails while running
    returns a record with status error or oom instead.
    """
    case = Case(model, size, batch_size, device, dtype, mode, step, seed, max_time_s, cudnn_benchmark,
                compile, autocast, compile_cold, energy_sampling, head, seq_len=seq_len,
                image_size=image_size).validate()
    session = Session(run_id, raise_bad_values=True)
    if workload is not None and workload.key == case.workload_key:
        session.adopt(workload)
    return session.measure(case)
