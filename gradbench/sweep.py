"""Expand a grid into cases and run them in worker processes: resumable, shardable, crash-proof.

A manager (this process) hands one workload group at a time (the cases sharing a model, size,
batch size, device and dtype, and a compile and autocast setting) to a spawned worker, which imports torch and builds the model once
and then measures the group's cases in a shuffled order, so slow drift of the machine favours no
mode. Workers run one at a time: concurrent measurement would disturb the timings (except with
``gpus``: one worker per GPU, each on a device of its own, launch/gpus.py). A worker that
dies or overruns --timeout is replaced, its case recorded as crashed or timeout, and the sweep
goes on. Every record is appended to the JSONL file as soon as it arrives.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .case import STEPS, Case
from .modes import DEFAULT_MODES
from .record import WORKLOAD_FIELDS, case_key, case_label, new_run_id

ISOLATION = ("worker", "case")


@dataclass(frozen=True)
class Grid:
    """What to sweep. Every field is a list of values; cases are their product."""

    models: tuple[str, ...] = ("mlp", "cnn", "transformer")
    sizes: tuple[str, ...] = ("tiny", "small")
    batch_sizes: tuple[int, ...] = (1, 8, 64)
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = DEFAULT_MODES
    steps: tuple[str, ...] = STEPS
    max_time_s: float = 0.5
    seed: int = 0
    cudnn_benchmark: bool = False
    compile: tuple[str, ...] = ("none",)
    autocast: tuple[str, ...] = ("none",)
    compile_cold: bool = False
    energy_sampling: bool = False
    head: str | None = None

    def cases(self) -> list[Case]:
        """All cases in a fixed order: grouped by workload, compile and autocast, modes and steps innermost."""
        return [
            Case(model, size, batch, device, dtype, mode, step, self.seed, self.max_time_s, self.cudnn_benchmark,
                 compile, autocast, self.compile_cold, self.energy_sampling, self.head)
            for model, size, batch, device, dtype, compile, autocast in itertools.product(
                self.models, self.sizes, self.batch_sizes, self.devices, self.dtypes, self.compile, self.autocast
            )
            for mode in self.modes
            for step in self.steps
        ]


def default_devices() -> tuple[str, ...]:
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


QUICK = dict(
    models=("mlp", "cnn", "transformer"), sizes=("tiny",), batch_sizes=(8, 64),
    steps=STEPS, max_time_s=0.2,
)


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N -> (I, N)."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"bad shard {text!r}; expected I/N, e.g. 1/4") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ValueError(f"bad shard {text!r}; expected I/N with 1 <= I <= N")
    return i, n


def shard(cases: list[Case], i: int, n: int) -> list[Case]:
    """Shard I of N: every N-th case of the fixed order, starting at I. The shards partition the cases."""
    return cases[i - 1 :: n]


def group_by_workload(cases: Iterable[Case]) -> list[list[Case]]:
    """Cases sharing a model and input batch, and under compile or autocast one compiled model."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group_key, []).append(case)
    return list(groups.values())


def shuffled(group: list[Case], seed: int) -> list[Case]:
    """The group's cases in an order drawn from the seed and the group, reproducible per sweep."""
    order = list(group)
    first = group[0]
    key = first.workload_key if first.group_key[-2:] == ("none", "none") else first.group_key  # eager: as before 0.4
    random.Random(f"{seed}:{key}").shuffle(order)
    return order


# ---------------------------------------------------------------- worker process


def _die_with_parent() -> None:
    """A killed manager must not leave a worker measuring on: ask Linux to end it too."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


# Ctrl-C and SIGTERM (scancel, a time limit, `kill` of the process group) are the manager's to handle: it
# stops the workers, and the case in flight is not recorded as a crash of its own.
MANAGERS_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR2}


def worker_main(conn, threads: int | None, record_rss: bool) -> None:
    """Receive groups of cases, measure them, send back ('start', key) then ('record', dict) per case."""
    _die_with_parent()
    for signum in MANAGERS_SIGNALS:  # Slurm's time-limit warning (USR2, which submitit asks for) too
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MANAGERS_SIGNALS)  # held since the spawn (Worker.__init__)
    import torch

    from . import state
    from .interrupts import raised_by_model
    from .pipeline import is_oom, measure_case
    from .workload import Workload

    if threads:
        torch.set_num_threads(threads)
    expected = state.expected_state(seed=None)  # captured before any model's code runs here
    imported: set[str] = set()  # user models whose module this process has imported (or failed to)

    @contextlib.contextmanager
    def importing(model: str):
        """Around a user model's first import here: if it exits, crashes or hangs the process, the
        manager knows it was the import, and records every case of that model so, not case by case."""
        if model in imported:
            yield
            return
        conn.send(("importing", model))
        try:
            yield
        finally:
            imported.add(model)
            conn.send(("imported", model))
    last_model = None  # whose code ran last in this process: the suspect if global state has changed
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        cases, run_id = message
        workload = None
        for case in cases:
            conn.send(("start", case))
            # Before each case: the state every case starts from, checked; a change is named and undone.
            leaked = state.check_and_restore(expected)
            try:
                if workload is None or workload.key != case.workload_key:
                    workload = None
                    last_model = case.model
                    conn.send(("building", case.workload_key))
                    try:
                        workload = Workload(*case.workload_key, import_scope=importing)
                    finally:
                        conn.send(("built", case.workload_key))
                record = measure_case(case, workload, run_id)
            except Exception as exc:  # the workload could not be built: every case of it says why
                status = "oom" if is_oom(exc) else "error"
                record = failure_record(case, run_id, status, f"{type(exc).__name__}: {exc}".strip())
                record["traceback"] = traceback.format_exc(limit=5)
            except (KeyboardInterrupt, SystemExit) as exc:  # the model's code's: a worker ignores SIGINT and SIGTERM
                record = failure_record(case, run_id, "error", raised_by_model(exc))
                record["traceback"] = traceback.format_exc(limit=5)
            if leaked:
                warning = state.describe(f"code that ran before this case (last model built: {last_model!r})",
                                         "outside a measured case", leaked)
                state.announce(warning)
                record["global_state_warning"] = "; ".join(w for w in (record["global_state_warning"], warning) if w)
            if record_rss:
                import resource

                record["rss_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            conn.send(("record", record))
        # Idle between groups, a worker holds no model: under --repeat K, K workers are alive at once.
        workload = None
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        conn.send(("done", None))


def failure_record(case: Case, run_id: str, status: str, message: str) -> dict:
    from .pipeline import workload_failure_record

    return workload_failure_record(case, run_id, status, message)


# ---------------------------------------------------------------- manager


@dataclass
class Progress:
    """Counts and timing the manager reports as it goes."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    statuses: dict = field(default_factory=dict)

    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (time.perf_counter() - self.started) / self.done * (self.total - self.done)


class Worker:
    def __init__(self, context, threads, record_rss, gpu: str | None = None):
        from .launch.gpus import pinned_environment

        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, threads, record_rss), daemon=True)
        # The signals a worker leaves to its manager are held (blocked) from the fork on, until worker_main
        # ignores them: a fresh worker still importing torch would otherwise die of one (Slurm's USR2 warning).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, MANAGERS_SIGNALS)
        try:
            with pinned_environment(gpu):  # --gpus: the worker sees its GPU only
                self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.is_alive():
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class WorkerPool:
    """One worker process per slot (the repeat index); a lost worker is replaced on its slot's next use."""

    def __init__(self, threads: int | None, record_rss: bool, gpu: str | None = None):
        self.context = multiprocessing.get_context("spawn")
        self.threads, self.record_rss, self.gpu = threads, record_rss, gpu
        self.workers: dict[int, Worker] = {}

    def get(self, slot: int) -> Worker:
        """The slot's worker; a fresh one if it has none, or if its worker has died while idle (a worker
        dies with the thread that started it: PR_SET_PDEATHSIG follows threads, and --gpus starts workers
        from a thread per GPU)."""
        worker = self.workers.get(slot)
        if worker is not None and not worker.process.is_alive():
            self.stop(slot)
            worker = None
        if worker is None:
            worker = self.workers[slot] = Worker(self.context, self.threads, self.record_rss, self.gpu)
        return worker

    def stop(self, slot: int, kill: bool = False) -> None:
        worker = self.workers.pop(slot, None)
        if worker is not None:
            worker.stop(kill=kill)

    def stop_all(self, kill: bool = False) -> None:
        for slot in list(self.workers):
            self.stop(slot, kill)


def untrusted(record: dict) -> bool:
    return record.get("status") == "ok" and record.get("time_trusted") is False


def run_sweep(
    cases: list[Case],
    write: Callable[[dict], None],
    *,
    run_id: str | None = None,
    timeout_s: float = 600.0,
    isolate: str = "worker",
    threads: int | None = None,
    on_record: Callable[[dict, Progress], None] | None = None,
    repeat: int = 1,
    retry_untrusted: int = 0,
    done: Iterable[tuple] = (),
    untrusted_done: Iterable[tuple] = (),
    gpus: tuple[str, ...] | None = None,
) -> Progress:
    """Run ``cases`` (already validated) and write each record.

    ``repeat`` K: every case is measured in K separate worker processes, interleaved group by group
    (process 1, 2 .. K on one workload, then the next), so that differences between processes show.
    ``retry_untrusted`` N: after the sweep, ok cases whose time is untrusted are measured again, in
    the same process slot, up to N more times; every attempt is written. ``done``: (case_key,
    repeat) pairs already in the results file (resume), not measured again; ``untrusted_done``:
    those of them whose time is untrusted, measured again with the retries. ``gpus``: GPU ids (as this
    process sees them) to run one pinned worker on each, at once (launch/gpus.py); None: one worker at a time.
    """
    if isolate not in ISOLATION:
        raise ValueError(f"unknown isolation {isolate!r}; valid: {', '.join(ISOLATION)}")
    if repeat < 1 or retry_untrusted < 0:
        raise ValueError(f"bad repeat {repeat} / retry_untrusted {retry_untrusted}; need repeat >= 1, retries >= 0")
    run_id = run_id or new_run_id()
    done = set(done)
    seed = cases[0].seed if cases else 0
    jobs = []  # (cases of one workload, repeat, attempt), in the order they run
    for group in group_by_workload(cases):
        for r in range(1, repeat + 1):
            todo = [c for c in group if (case_key(c.identity()), r) not in done]
            if todo:
                jobs.append((shuffled(todo, f"{seed}:{r}"), r, 1))
    jobs = _per_case(jobs) if isolate == "case" else jobs
    progress = Progress(total=sum(len(g) for g, _, _ in jobs))
    pools = {gpu: WorkerPool(threads, record_rss=(isolate == "case"), gpu=gpu) for gpu in (gpus or (None,))}
    retry: dict[int, list[Case]] = {}  # repeat -> cases whose newest attempt is untrusted
    if retry_untrusted:
        by_key = {case_key(c.identity()): c for c in cases}
        for key, r in untrusted_done:
            if key in by_key and r <= repeat:
                retry.setdefault(r, []).append(by_key[key])

    broken: dict[str, tuple[str, str]] = {}  # user model -> (status, message) when its import failed

    emitting = threading.Lock()  # --gpus: records arrive from one thread per GPU
    stopped = threading.Event()

    def emit(record: dict, r: int, attempt: int, case: Case) -> None:
        with emitting:
            if stopped.is_set():  # the sweep was interrupted: a killed worker's "crash" is no result
                return
            record.update(repeat=r, attempt=attempt)
            write(record)
            progress.done += 1
            progress.statuses[record["status"]] = progress.statuses.get(record["status"], 0) + 1
            if untrusted(record):
                retry.setdefault(r, []).append(case)
            if on_record:
                on_record(record, progress)

    def run_job(gpu, job) -> None:
        group, r, attempt_no = job
        pool = pools[gpu]
        _run_group(pool, r, group, run_id, timeout_s, lambda record, case: emit(record, r, attempt_no, case), broken,
                   stopped)
        # A worker that has used a GPU keeps a CUDA context: idle beside the next process's
        # measurement it would hold GPU memory and count as another process on the GPU.
        if isolate == "case" or (repeat > 1 and group[0].device.startswith("cuda")):
            pool.stop(r)

    try:
        for attempt in range(1, retry_untrusted + 2):
            if attempt > 1:
                jobs = [(shuffled(g, f"{seed}:{r}:{attempt}"), r, attempt) for r, again in sorted(retry.items())
                        for g in group_by_workload(again)]
                jobs = _per_case(jobs) if isolate == "case" else jobs
                retry.clear()
                progress.total += sum(len(g) for g, _, _ in jobs)
            if gpus:
                from .launch.gpus import run_on_gpus

                run_on_gpus(jobs, gpus, run_job, stopped)
                # Its threads have ended, and their workers die with them, asynchronously: stop them now,
                # so the next round's threads never get a worker that is still dying.
                for pool in pools.values():
                    pool.stop_all()
            else:
                for job in jobs:
                    run_job(None, job)
            if not retry:
                break
    finally:
        failed = sys.exc_info()[0] is not None
        if failed:
            stopped.set()
        for pool in pools.values():
            pool.stop_all(kill=failed)
    return progress


def _per_case(jobs: list[tuple]) -> list[tuple]:
    """--isolate case: every case of a job a job of its own (so a fresh process)."""
    return [([case], r, attempt) for group, r, attempt in jobs for case in group]


WORKER_START_S = 120.0  # a fresh worker's spawn and torch import, not counted against its first case


def _run_group(pool: WorkerPool, slot: int, group: list[Case], run_id: str, timeout_s: float,
               emit: Callable[[dict, Case], None], broken: dict | None = None,
               stopped: threading.Event | None = None) -> None:
    """Measure one group on the slot's worker; a case whose worker dies or overruns is recorded as such,
    the worker replaced, and the group goes on. If the worker dies or overruns while importing a user
    model, or while building the group's workload, every case of that model (or workload) is recorded
    so at once, here and in later groups (``broken``), instead of killing a worker per case."""
    broken = {} if broken is None else broken
    pending = list(group)
    while pending and not (stopped and stopped.is_set()):  # stopped: the sweep was interrupted (--gpus threads)
        known = broken.get(pending[0].model) or broken.get(pending[0].workload_key)
        if known:
            for case in list(pending):
                pending.remove(case)
                emit(failure_record(case, run_id, *known), case)
            return
        worker = pool.get(slot)
        worker.conn.send((pending, run_id))
        current, stages, heard, started = None, [], False, time.perf_counter()  # stages: building > importing
        while True:
            limit = timeout_s if heard else timeout_s + WORKER_START_S
            left = limit - (time.perf_counter() - started)
            if worker.conn.poll(max(0.0, min(left, 0.5))):
                try:
                    kind, payload = worker.conn.recv()
                    heard = True
                except (EOFError, OSError):
                    kind, payload = "died", None
            elif not worker.process.is_alive():
                kind, payload = "died", None
            elif left <= 0:  # covers a worker that never starts its first case, too
                kind, payload = "timeout", None
            else:
                continue
            if kind in ("start", "importing", "building"):  # each has a --timeout of its own
                started = time.perf_counter()
                if kind == "start":
                    current = payload
                else:
                    stages.append((kind, payload))
            elif kind in ("imported", "built"):
                stages.pop()
                started = time.perf_counter()
            elif kind == "record":
                pending.remove(current)
                emit(payload, current)
                current = None
            elif kind == "done":
                break
            else:  # the worker died or overran: record the case it was on, replace the worker
                if kind == "died":
                    worker.process.join(timeout=5)  # its own exit code, not the kill's
                pool.stop(slot, kill=True)
                exitcode = worker.process.exitcode
                status = "timeout" if kind == "timeout" else "crashed"
                if stages:
                    stage = stages[-1]
                    what = f"importing model {stage[1]!r}" if stage[0] == "importing" else \
                        f"building {case_label(dict(zip(WORKLOAD_FIELDS[:5], stage[1])), omit=('mode', 'step'))}"
                    message = f"{what} exceeded --timeout {timeout_s:g} s; worker killed" if kind == "timeout" \
                        else f"{what} ended its worker process (exit code {exitcode})"
                    broken[stage[1] if stage[0] == "importing" else tuple(stage[1])] = (status, message)
                    break  # the loop's top records every pending case of the model or workload
                victim = current or pending[0]
                if kind == "timeout":
                    message = f"case exceeded --timeout {timeout_s:g} s; worker killed"
                else:
                    message = f"worker process died (exit code {exitcode})"
                pending.remove(victim)
                emit(failure_record(victim, run_id, status, message), victim)
                break
