"""One `gradbench run`: take the results file (one run owns it), resume what it holds, plan the rest and
hand the plan to an executor (local, or Slurm). Settings come validated (settings.py); the summary and
the report are the command's (commands/run.py), written while the file is still this run's."""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .console import ProgressPrinter
from .errors import BadInput, cannot_write
from .settings import RunSettings
from .text import terminal_text


def report_dir_for(results_path: str) -> str:
    """results/runs/X.jsonl -> results/runs/X-report/"""
    base = results_path[: -len(".jsonl")] if results_path.endswith(".jsonl") else results_path
    return base + "-report"


def execute(settings: RunSettings, finish: Callable[["Finished"], None] | None = None) -> int:
    """The run, with its results file locked from before it is read for --resume until ``finish`` (the
    command's summary and report) has read it back."""
    from .record import new_run_id
    from .storage import ResultsLock, ResultsLocked, jsonl_out

    run_id = new_run_id()
    out = jsonl_out(settings.out, "runs", run_id)
    if os.path.exists(out) and not stat.S_ISREG(os.stat(out).st_mode):
        raise BadInput(f"--out {out!r} is not a regular file; name a JSONL file")
    existed = os.path.exists(out)
    try:
        lock = ResultsLock(out)  # taken before the file is read for --resume
    except ResultsLocked as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise cannot_write("--out", out, exc) from None
    with lock, _terminated_as_exit():
        try:
            finished = _measure_into(out, settings, run_id)
        except BadInput:  # refused before anything was measured (Slurm refused the job): leave no empty file
            if not existed and os.path.exists(out) and os.path.getsize(out) == 0:
                os.remove(out)
            raise
        if finished.stopped is not None:
            return finished.stopped
        if finish is not None:
            finish(finished)
        return 0


@dataclass
class Finished:
    """What a run leaves for its summary and report: this run's records, its progress and wall time, or
    the exit status it was stopped with (then there is no summary)."""

    out: str
    settings: RunSettings
    records: list
    progress: object = None
    wall_s: float = 0.0
    started: float = 0.0
    stopped: int | None = None


class Terminated(SystemExit):
    """SIGTERM: the run ends with exit status 143, saying how to resume, as Ctrl-C does."""


@contextlib.contextmanager
def _terminated_as_exit():
    """SIGTERM (a scheduler, `kill`) ends the run like an exception: workers stopped, lock released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _measure_into(out: str, settings: RunSettings, run_id: str) -> Finished:
    """The sweep into ``out`` (its lock held): what is done already, then the rest, here or on Slurm."""
    from .plan import Plan
    from .storage import JsonlWriter

    previous = _previous(out, settings)
    try:
        writer = JsonlWriter(out)
    except OSError as exc:
        raise cannot_write("--out", out, exc) from None
    finished = Finished(out, settings, records=[], started=time.perf_counter())

    def write(record):
        finished.records.append(writer.write(record))  # the frozen record the writer checked and wrote

    plan = Plan(settings.cases, repeat=settings.repeat, retry_untrusted=settings.retry_untrusted,
                isolate=settings.isolate, done=frozenset(previous.done), untrusted_done=frozenset(previous.untrusted))
    executor = _executor(out, settings, run_id, previous)
    try:
        with writer:
            finished.progress = executor.run(plan, write, ProgressPrinter())
    except (KeyboardInterrupt, Terminated) as stopped:
        again = "--launcher slurm --resume (the same command)" if settings.launcher == "slurm" else "--resume"
        how = "terminated (SIGTERM)" if isinstance(stopped, Terminated) else "interrupted"
        print(f"\ngradbench: {how}; this run wrote {len(finished.records)} records to {out}; "
              f"continue with: gradbench run ... --out {out} {again}", file=sys.stderr)
        finished.stopped = stopped.code if isinstance(stopped, Terminated) else 130
    finished.wall_s = time.perf_counter() - finished.started
    return finished


def _previous(out: str, settings: RunSettings):
    """What --out holds of this sweep (--resume), or a refusal: it has results, or an unmerged Slurm job."""
    from .launch.jobs import slurm_dir, unmerged
    from .resume import Previous, previous_results

    attached = unmerged(out)
    if attached and settings.launcher != "slurm":
        raise BadInput(f"--out {out!r} belongs to Slurm job {attached[-1]['job_id']}, not yet merged "
                       f"({slurm_dir(out)}); resume it with --launcher slurm --resume")
    if settings.resume:
        previous = previous_results(out, settings.cases, settings.repeat, settings.threads,
                                    this_machine=settings.launcher != "slurm")
        for w in previous.warnings:
            print(f"gradbench: warning: {terminal_text(w)}", file=sys.stderr)
        return previous
    if (os.path.exists(out) and os.path.getsize(out) > 0) or attached:
        raise BadInput(f"--out {out!r} already has results{' (or a Slurm job)' if attached else ''}; pass --resume "
                       "to continue it, or choose another --out")
    return Previous()


def _executor(out: str, settings: RunSettings, run_id: str, previous):
    """The local executor (one worker at a time, or one per GPU), or Slurm's, which announces what is to
    run itself once it has merged what finished jobs measured."""
    cases, repeat = settings.cases, settings.repeat

    def announce(previous) -> None:
        times = f" ({len(cases)} x {repeat} worker processes)" if repeat > 1 else ""
        where = f" on Slurm ({settings.slurm.jobs} tasks at most)" if settings.launcher == "slurm" else ""
        print(f"gradbench: {len(cases) * repeat - previous.skipped} cases{times} to run{where} ({previous.skipped} "
              f"already done) -> {out}", file=sys.stderr)

    if settings.launcher == "slurm":
        from .executors.slurm import SlurmExecutor

        return SlurmExecutor(out, settings, run_id, announce)
    from .executors.local import LocalExecutor

    announce(previous)
    return LocalExecutor(run_id, settings.timeout_s, settings.threads, settings.gpus)
