"""One `gradbench run`: take the results file (one run owns it), resume what it holds, sweep the
rest into it, print the summary, write the report. Settings come validated (settings.py)."""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
import time

from .errors import BadInput, cannot_write
from .settings import RunSettings
from .text import terminal_text


def default_out(run_id: str) -> str:
    return os.path.join("results", "runs", f"{run_id}.jsonl")


def report_dir_for(results_path: str) -> str:
    """results/runs/X.jsonl -> results/runs/X-report/"""
    base = results_path[: -len(".jsonl")] if results_path.endswith(".jsonl") else results_path
    return base + "-report"


def execute(settings: RunSettings) -> int:
    from .record import new_run_id
    from .storage import ResultsLock, ResultsLocked

    run_id = new_run_id()
    out = settings.out or default_out(run_id)
    if os.path.isdir(out):
        raise BadInput(f"--out {out!r} is a folder; name a JSONL file (e.g. {os.path.join(out, run_id + '.jsonl')})")
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
            return _measure_into(out, settings, run_id)
        except BadInput:  # refused before anything was measured (Slurm refused the job): leave no empty file
            if not existed and os.path.exists(out) and os.path.getsize(out) == 0:
                os.remove(out)
            raise


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


def _measure_into(out: str, settings: RunSettings, run_id: str) -> int:
    """The sweep into ``out`` (its lock held): resume, sweep (here, or as a Slurm job array), summary, report."""
    from .console import ProgressPrinter
    from .launch.jobs import slurm_dir, unmerged
    from .reading import ResultsFileError
    from .report.summary import print_summary
    from .results import load
    from .resume import Previous, previous_results
    from .storage import JsonlWriter
    from .sweep import run_sweep

    cases, repeat = list(settings.cases), settings.repeat
    on_slurm = settings.launcher == "slurm"
    attached = unmerged(out)
    if attached and not on_slurm:
        raise BadInput(f"--out {out!r} belongs to Slurm job {attached[-1]['job_id']}, not yet merged "
                       f"({slurm_dir(out)}); resume it with --launcher slurm --resume")
    previous = Previous()
    if settings.resume:
        previous = previous_results(out, cases, repeat, settings.threads, this_machine=not on_slurm)
        for w in previous.warnings:
            print(f"gradbench: warning: {terminal_text(w)}", file=sys.stderr)
    elif (os.path.exists(out) and os.path.getsize(out) > 0) or attached:
        raise BadInput(f"--out {out!r} already has results{' (or a Slurm job)' if attached else ''}; pass --resume "
                       "to continue it, or choose another --out")
    try:
        writer = JsonlWriter(out)
    except OSError as exc:
        raise cannot_write("--out", out, exc) from None

    def announce(previous) -> None:
        times = f" ({len(cases)} x {repeat} worker processes)" if repeat > 1 else ""
        where = f" on Slurm ({settings.slurm.jobs} tasks at most)" if on_slurm else ""
        print(f"gradbench: {len(cases) * repeat - previous.skipped} cases{times} to run{where} ({previous.skipped} "
              f"already done) -> {out}", file=sys.stderr)

    started = time.perf_counter()
    records: list[dict] = []

    def write(record):
        writer.write(record)
        records.append(record)

    try:
        with writer:
            if on_slurm:
                from .launch.slurm import sweep_on_slurm

                progress = sweep_on_slurm(
                    out, settings, run_id, write, announce=announce,
                    previous_for=lambda: previous_results(out, cases, repeat, settings.threads, this_machine=False))
            else:
                announce(previous)
                progress = run_sweep(cases, write, run_id=run_id, timeout_s=settings.timeout_s,
                                     isolate=settings.isolate, threads=settings.threads, on_record=ProgressPrinter(),
                                     repeat=repeat, retry_untrusted=settings.retry_untrusted, done=previous.done,
                                     untrusted_done=previous.untrusted, gpus=settings.gpus)
    except (KeyboardInterrupt, Terminated) as stopped:
        again = "--launcher slurm --resume (the same command)" if on_slurm else "--resume"
        how = "terminated (SIGTERM)" if isinstance(stopped, Terminated) else "interrupted"
        print(f"\ngradbench: {how}; this run wrote {len(records)} records to {out}; "
              f"continue with: gradbench run ... --out {out} {again}", file=sys.stderr)
        return stopped.code if isinstance(stopped, Terminated) else 130
    wall = time.perf_counter() - started
    try:
        everything = load([out], warn=lambda m: None)  # this run and any it resumed
    except ResultsFileError:  # nothing recorded at all (an empty shard, say): no tables, no report
        everything = None
    print_summary(out, everything, records, progress, wall, settings.retry_untrusted,
                  concurrent=on_slurm or bool(settings.gpus))
    if everything is not None and not settings.no_report:
        from .report.document import write_report

        paths = write_report(everything, report_dir_for(out), title=f"gradbench report: {out}")
        print(f"report: {paths['html']} (and report.md, figures/)")
        print(f"        report written {time.perf_counter() - started - wall:.1f} s after the sweep")
    return 0
