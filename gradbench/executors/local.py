"""The local executor: runs a plan's batches on worker processes of this machine, one at a time (concurrent
measurement would disturb the timings), or with ``gpus`` one pinned worker per GPU at once (launch/gpus.py).

A worker that dies or overruns --timeout is replaced, its case recorded as crashed or timeout, and the
sweep goes on; if it dies or overruns while importing a user model or building a workload, every case
of that model (or workload) is recorded so at once. Every record is handed to ``write`` as it arrives.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Iterable

from ..case import WORKLOAD_KEY_FIELDS, Case
from ..plan import Batch, Plan, needs_retry
from ..record import Record, case_label, new_run_id
from ..session import failure_record
from . import messages
from .base import Progress
from .pool import WorkerPool

WORKER_START_S = 120.0  # a fresh worker's spawn and torch import, not counted against its first case


class LocalExecutor:
    """``timeout_s`` per case (and per import or build); ``threads`` per worker; ``gpus``: GPU ids (as this
    process sees them) to run one pinned worker on each, at once; None: one worker at a time."""

    def __init__(self, run_id: str | None = None, timeout_s: float = 600.0, threads: int | None = None,
                 gpus: tuple[str, ...] | None = None):
        self.run_id, self.timeout_s, self.threads, self.gpus = run_id or new_run_id(), timeout_s, threads, gpus

    def run(self, plan: Plan, write: Callable[[dict], None],
            on_record: Callable[[dict, Progress], None] | None = None) -> Progress:
        batches = plan.first_batches()
        progress = Progress(total=sum(len(b.cases) for b in batches))
        pools = {gpu: WorkerPool(self.threads, record_rss=(plan.isolate == "case"), gpu=gpu)
                 for gpu in (self.gpus or (None,))}
        due = plan.resumed_retries()  # attempt -> repeat -> cases resumed untrusted
        untrusted: dict[int, list[Case]] = {}  # repeat -> cases whose newest attempt is untrusted
        sweep = _Sweep(self, plan, pools, write, on_record, progress, untrusted)
        try:
            for attempt in range(1, plan.attempts + 1):
                if attempt > 1:
                    for r, cases in due.pop(attempt, {}).items():
                        untrusted.setdefault(r, []).extend(cases)
                    batches = plan.retry_batches(untrusted, attempt)
                    untrusted.clear()
                    progress.total += sum(len(b.cases) for b in batches)
                sweep.run_all(batches)
                if not untrusted and not due:
                    break
        finally:
            failed = sys.exc_info()[0] is not None
            if failed:
                sweep.stopped.set()
            for pool in pools.values():
                pool.stop_all(kill=failed)
        return progress


class _Sweep:
    """One executor run's shared state: its pools, the models and workloads known broken, and the records'
    one way out (a lock: under --gpus they arrive from one thread per GPU)."""

    def __init__(self, executor: LocalExecutor, plan: Plan, pools: dict, write, on_record, progress: Progress,
                 untrusted: dict[int, list[Case]]):
        self.executor, self.plan, self.pools = executor, plan, pools
        self.write, self.on_record, self.progress, self.untrusted = write, on_record, progress, untrusted
        self.broken: dict = {}  # user model or workload key -> (status, message) when its import or build failed
        self.emitting = threading.Lock()
        self.stopped = threading.Event()

    def run_all(self, batches: list[Batch]) -> None:
        gpus = self.executor.gpus
        if not gpus:
            for batch in batches:
                self.run_batch(None, batch)
            return
        from ..launch.gpus import run_on_gpus

        run_on_gpus(batches, gpus, self.run_batch, self.stopped)
        # Its threads have ended, and their workers die with them, asynchronously: stop them now,
        # so the next round's threads never get a worker that is still dying.
        for pool in self.pools.values():
            pool.stop_all()

    def emit(self, record: Record, batch: Batch, case: Case) -> None:
        with self.emitting:
            if self.stopped.is_set():  # the sweep was interrupted: a killed worker's "crash" is no result
                return
            record = record.replace(repeat=batch.repeat, attempt=batch.attempt)
            self.write(record)
            self.progress.count(record)
            if needs_retry(record):
                self.untrusted.setdefault(batch.repeat, []).append(case)
            if self.on_record:
                self.on_record(record, self.progress)

    def run_batch(self, gpu: str | None, batch: Batch) -> None:
        pool = self.pools[gpu]
        executor = self.executor
        BatchRun(pool, batch, executor.run_id, executor.timeout_s, lambda record, case: self.emit(record, batch, case),
                 self.broken, self.stopped).run()
        # A worker that has used a GPU keeps a CUDA context: idle beside the next process's
        # measurement it would hold GPU memory and count as another process on the GPU.
        if self.plan.isolate == "case" or (self.plan.repeat > 1 and batch.cases[0].device.startswith("cuda")):
            pool.stop(batch.repeat)


class BatchRun:
    """One batch on its slot's worker, as the manager follows it: a case whose worker dies or overruns is
    recorded as such, the worker replaced, and the batch goes on. ``broken`` is shared by the batches of a
    sweep: a model whose import (or a workload whose build) killed or hung its worker is recorded at once."""

    def __init__(self, pool: WorkerPool, batch: Batch, run_id: str, timeout_s: float,
                 emit: Callable[[dict, Case], None], broken: dict | None = None,
                 stopped: threading.Event | None = None):
        self.pool, self.slot, self.run_id, self.timeout_s = pool, batch.repeat, run_id, timeout_s
        self.emit, self.broken, self.stopped = emit, {} if broken is None else broken, stopped
        self.pending = list(batch.cases)

    def run(self) -> None:
        while self.pending and not (self.stopped and self.stopped.is_set()):  # stopped: interrupted (--gpus)
            known = self.broken.get(self.pending[0].model) or self.broken.get(self.pending[0].workload_key)
            if known:
                for case in list(self.pending):
                    self.pending.remove(case)
                    self.emit(failure_record(case, self.run_id, *known), case)
                return
            worker = self.pool.get(self.slot)
            worker.conn.send(messages.Measure(tuple(self.pending), self.run_id))
            self._follow(worker)

    def _follow(self, worker) -> None:
        """Until the worker says the batch is done, or dies or overruns (then the loop in run() goes on
        with a fresh worker)."""
        current, stages, heard, started = None, [], False, time.perf_counter()  # stages: building > importing
        while True:
            message = self._next(worker, timeout=self.timeout_s if heard else self.timeout_s + WORKER_START_S,
                                 started=started)
            if message is None:
                continue
            heard = heard or not isinstance(message, (messages.Died, messages.TimedOut))
            if isinstance(message, (messages.Started, *messages.STAGE_BEGINS)):  # each has a --timeout of its own
                started = time.perf_counter()
                if isinstance(message, messages.Started):
                    current = message.case
                else:
                    stages.append(message)
            elif isinstance(message, messages.STAGE_ENDS):
                stages.pop()
                started = time.perf_counter()
            elif isinstance(message, messages.Measured):
                self.pending.remove(current)
                self.emit(message.record, current)
                current = None
            elif isinstance(message, messages.BatchDone):
                return
            else:
                self._lost(worker, message, stages[-1] if stages else None, current)
                return

    def _next(self, worker, timeout: float, started: float):
        """The worker's next message, Died, TimedOut, or None (nothing yet; ask again)."""
        left = timeout - (time.perf_counter() - started)
        if worker.conn.poll(max(0.0, min(left, 0.5))):
            try:
                return worker.conn.recv()
            except (EOFError, OSError):
                return messages.Died()
        if not worker.process.is_alive():
            return messages.Died()
        if left <= 0:  # covers a worker that never starts its first case, too
            return messages.TimedOut()
        return None

    def _lost(self, worker, how, stage, current: Case | None) -> None:
        """The worker died or overran: record the case it was on (or, in an import or build, every case of
        that model or workload) and replace the worker."""
        if isinstance(how, messages.Died):
            worker.process.join(timeout=5)  # its own exit code, not the kill's
        self.pool.stop(self.slot, kill=True)
        exitcode = worker.process.exitcode
        timed_out = isinstance(how, messages.TimedOut)
        status = "timeout" if timed_out else "crashed"
        if stage is not None:
            importing = isinstance(stage, messages.Importing)
            what = f"importing model {stage.model!r}" if importing else \
                f"building {case_label(dict(zip(WORKLOAD_KEY_FIELDS, stage.workload_key)), omit=('mode', 'step'))}"
            message = f"{what} exceeded --timeout {self.timeout_s:g} s; worker killed" if timed_out \
                else f"{what} ended its worker process (exit code {exitcode})"
            self.broken[stage.model if importing else tuple(stage.workload_key)] = (status, message)
            return  # run() records every pending case of the model or workload
        victim = current or self.pending[0]
        message = f"case exceeded --timeout {self.timeout_s:g} s; worker killed" if timed_out \
            else f"worker process died (exit code {exitcode})"
        self.pending.remove(victim)
        self.emit(failure_record(victim, self.run_id, status, message), victim)


def run_sweep(cases: list[Case], write: Callable[[dict], None], *, run_id: str | None = None,
              timeout_s: float = 600.0, isolate: str = "worker", threads: int | None = None,
              on_record: Callable[[dict, Progress], None] | None = None, repeat: int = 1, retry_untrusted: int = 0,
              done: Iterable[tuple] = (), untrusted_done: Iterable[tuple] = (),
              gpus: tuple[str, ...] | None = None) -> Progress:
    """Plan ``cases`` (already validated) and run the plan here: the one call of a local sweep."""
    plan = Plan(tuple(cases), repeat=repeat, retry_untrusted=retry_untrusted, isolate=isolate,
                done=frozenset(done), untrusted_done=frozenset(untrusted_done))
    return LocalExecutor(run_id, timeout_s, threads, gpus).run(plan, write, on_record)
