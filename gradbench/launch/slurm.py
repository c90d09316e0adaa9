"""`gradbench run --launcher slurm --jobs N`: the sweep as one Slurm job array, submitted through submitit.

The submitting command holds --out's lock. Each task measures whole workloads (every mode of a model is
measured in one process on one node, so modes are compared on the same hardware) with the usual worker
machinery, into a part file of its own in OUT-slurm/parts/. The submitter polls Slurm's queue (squeue,
then scontrol for tasks that have left it; never accounting, which many clusters lack), prints progress,
and when no task is left merges the parts into --out: every record once, and every case a task did not
record as `crashed`, with the task's Slurm state. The job is kept in OUT-slurm/job.json, so a submitter
that was killed is re-attached by `--resume`; a job that has ended meanwhile is merged, and only the
cases still missing are submitted again. Reading Slurm's queue is slurm_queue.py's, merging slurm_merge.py's.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sys
import time
from dataclasses import asdict, dataclass

from ..errors import BadInput, cannot_write
from .jobs import load_jobs, save_jobs, slurm_dir, unmerged
from .slurm_merge import merge, records_in
from .slurm_queue import NEVER_STARTS, SlurmQueue
from .slurm_task import part_path

POLL_S = 2.0
# The settings gradbench has options of its own for; submitit's other Slurm parameters are free KEY=VALUE.
OWN_PARAMETERS = {"time": "--slurm-time", "partition": "--slurm-partition", "constraint": "--slurm-constraint",
                  "gpus_per_task": "--slurm-gpus-per-task", "cpus_per_task": "--slurm-cpus-per-task",
                  "array_parallelism": "--slurm-parallel"}
# Parameters that would run the task function more than once per task, or that take lists and tables.
REFUSED_PARAMETERS = {"nodes", "ntasks_per_node", "num_gpus", "additional_parameters", "setup", "teardown",
                      "srun_args", "job_name"}
DEFAULT_TIME_MIN = 60


@dataclass(frozen=True)
class SlurmOptions:
    """How the job array is asked for."""

    jobs: int = 1
    partition: str | None = None
    constraint: str | None = None  # a GPU type, to compare GPUs (e.g. a100, h100: the cluster's feature names)
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    time_min: int = DEFAULT_TIME_MIN
    parallel: int | None = None  # Slurm's %K: at most K tasks at once (1: none disturbs another's timings)
    extra: tuple = ()  # (key, value) pairs passed to submitit as they are

    def executor_parameters(self, tasks: int) -> dict:
        parameters = {"time": self.time_min, "signal_delay_s": signal_delay_s(self.time_min),
                      "job_name": "gradbench", "array_parallelism": min(self.parallel or tasks, tasks)}
        for key in ("partition", "constraint", "gpus_per_task", "cpus_per_task"):
            if getattr(self, key) is not None:
                parameters[key] = getattr(self, key)
        parameters.update(dict(self.extra))
        return parameters


def signal_delay_s(time_min: int) -> int:
    """submitit asks Slurm for USR2 this long before the time limit, and ends a task that gets it; Slurm
    may send it up to 60 s early. Its 90 s would end short tasks at random: take a tenth of the limit."""
    return max(10, min(90, time_min * 6))


def _submitit_parameters() -> set[str]:
    try:
        import submitit
    except ImportError:
        raise BadInput("--launcher slurm needs submitit: pip install 'gradbench[slurm]' (or pip install submitit)") \
            from None
    return set(submitit.SlurmExecutor._valid_parameters())


def parse_pairs(pairs) -> tuple:
    """--slurm-option KEY=VALUE (repeated) -> ((key, value), ...): submitit's Slurm parameter names
    (mem, account, qos, exclude, ...); a later pair for one key wins. Numbers become ints, true/false bools."""
    valid = _submitit_parameters() - set(OWN_PARAMETERS) - REFUSED_PARAMETERS
    chosen: dict = {}
    for text in pairs or ():
        key, sep, value = str(text).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise BadInput(f"bad --slurm-option {text!r}; expected KEY=VALUE, e.g. mem=16G or account=myproject")
        if key in OWN_PARAMETERS:
            raise BadInput(f"--slurm-option {text!r}: give it as {OWN_PARAMETERS[key]}")
        if key not in valid:
            raise BadInput(f"unknown --slurm-option key {key!r}; valid keys: {', '.join(sorted(valid))}")
        value = value.strip()
        chosen[key] = int(value) if value.isdigit() else {"true": True, "false": False}.get(value.lower(), value)
    # submitit writes True as a bare flag (--exclusive) and False as "--exclusive=False", which sbatch
    # refuses: false means leave the flag out
    return tuple((k, v) for k, v in chosen.items() if v is not False)


def options_from(settings: dict, number) -> SlurmOptions:
    """SlurmOptions from a run's merged settings (``number``: settings.number, which checks ranges)."""
    for key in ("slurm_partition", "slurm_constraint"):
        if settings.get(key) is not None and not str(settings[key]).strip():
            raise BadInput(f"--{key.replace('_', '-')} is empty")
    return SlurmOptions(
        jobs=number(settings, "jobs", default=1), partition=settings.get("slurm_partition"),
        constraint=settings.get("slurm_constraint"), gpus_per_task=number(settings, "slurm_gpus_per_task"),
        cpus_per_task=number(settings, "slurm_cpus_per_task"),
        time_min=number(settings, "slurm_time", default=DEFAULT_TIME_MIN),
        parallel=number(settings, "slurm_parallel"), extra=parse_pairs(settings.get("slurm_options")),
    )


def check_cluster(which=None) -> None:
    """A one-line refusal where no Slurm commands are at hand (before anything is written)."""
    import shutil

    which = which or shutil.which
    for command in ("sbatch", "squeue", "scontrol", "srun"):
        if not which(command):
            raise BadInput(f"--launcher slurm: {command!r} is not on PATH; run on a machine of the Slurm cluster "
                           "(a login node), or use --launcher local")


def split_among(cases: list, jobs: int) -> list[list]:
    """Whole workloads to at most ``jobs`` tasks, largest first to the least loaded, so the tasks are
    about even. Fewer workloads than jobs: fewer tasks (a workload is never split across nodes)."""
    from ..plan import group_by_workload

    groups = sorted(group_by_workload(cases), key=len, reverse=True)
    tasks: list[list] = [[] for _ in range(min(jobs, len(groups)))]
    for group in groups:
        min(tasks, key=len).extend(group)
    return tasks


# ---------------------------------------------------------------- the submitting command


def sweep_on_slurm(out: str, settings, run_id: str, write, previous_for, announce):
    """Re-attach to this --out's unmerged jobs, then submit what is still missing (at most one new job
    per call, so cases that crash every time are recorded, not resubmitted forever). ``write``: appends
    a record to --out; ``previous_for()``: what --out holds now (resume.Previous); ``announce(previous)``:
    prints what is to run."""
    from ..record import case_key
    from ..executors.base import Progress

    queue = SlurmQueue()
    progress = Progress(total=0)
    for job in unmerged(out):  # before waiting on it: a job measured under other settings is refused now
        check_job_settings(out, job, settings)
    submitted = False
    while True:
        for job in unmerged(out):
            _attach(out, job, queue, write, progress)
        previous = previous_for()
        todo = [c for c in settings.cases
                if any((case_key(c.identity()), k) not in previous.done for k in range(1, settings.repeat + 1))]
        if submitted or not todo:
            if not submitted:
                announce(previous)
            return progress
        _submit(out, settings, run_id, todo)
        announce(previous)
        submitted = True


def check_job_settings(out: str, job: dict, settings) -> None:
    """resume.check_same_settings for a job not yet merged: its cases' seed, time cap and cudnn setting,
    and its tasks' thread count, against this run's."""
    from ..resume import check_same_settings, settings_of

    if not job["cases"] or not job["cases"][0] or not settings.cases:
        return
    first = job["cases"][0][0]
    cuda = any(c["device"].startswith("cuda") for task in job["cases"] for c in task)
    measured = {"status": "ok", "seed": first["seed"], "max_time_s": first["max_time_s"], "threads": job.get("threads"),
                "cudnn_benchmark": first["cudnn_benchmark"] if cuda else None,
                "compile_cold": first.get("compile_cold") if any(c.get("compile", "none") != "none"
                                                                  for task in job["cases"] for c in task) else None,
                "energy_sampling": first.get("energy_sampling", False) if cuda else None,
                "head": first.get("head")}
    wanted = settings_of(list(settings.cases), _task_threads(settings), this_machine=False)
    check_same_settings(out, [measured], wanted)


def _task_threads(settings) -> int | None:
    """--threads, else the CPUs each task is given, else torch's choice on the node (None)."""
    return settings.threads or settings.slurm.cpus_per_task


def _task_options(settings, run_id: str) -> dict:
    return {"run_id": run_id, "timeout_s": settings.timeout_s, "isolate": settings.isolate,
            "threads": _task_threads(settings), "repeat": settings.repeat,
            "retry_untrusted": settings.retry_untrusted, "gpus": settings.gpus}


def _submit(out: str, settings, run_id: str, cases: list) -> dict:
    import shutil

    import submitit

    from .slurm_task import run_part

    folder = slurm_dir(out)
    fresh = not os.path.exists(folder)
    parts, logs = os.path.join(folder, "parts"), os.path.join(folder, "logs")
    try:
        os.makedirs(parts, exist_ok=True)
        os.makedirs(logs, exist_ok=True)
    except OSError as exc:
        raise cannot_write("the Slurm folder", folder, exc) from None
    tasks = split_among(cases, settings.slurm.jobs)
    options = _task_options(settings, run_id)
    executor = submitit.SlurmExecutor(folder=os.path.join(logs, "%j"), max_num_timeout=0)
    parameters = settings.slurm.executor_parameters(len(tasks))
    executor.update_parameters(**parameters)
    try:
        with _stderr_captured() as said:  # sbatch's own complaint goes into the one-line error
            jobs = executor.map_array(run_part, [os.path.abspath(parts)] * len(tasks), range(len(tasks)), tasks,
                                      [options] * len(tasks))
    except Exception as exc:  # sbatch refused it: a partition, constraint or option the cluster lacks
        # submitit leaves its pickles and script in logs/%j (the job id never came): nothing to keep
        shutil.rmtree(folder if fresh else os.path.join(logs, "%j"), ignore_errors=True)
        for name in () if fresh else os.listdir(logs):  # its submission script and pickles, left beside
            if name.startswith(".submission_file_") or name.endswith(".pkl"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(logs, name))
        text = str(getattr(exc, "stderr", None) or getattr(exc, "output", None) or "") + "\n" + said() + "\n" + str(exc)
        raise BadInput(f"Slurm refused the job array: {_sbatch_complaint(text) or repr(exc)}") from None
    job_id = str(jobs[0].job_id).split("_")[0]
    job = {"job_id": job_id, "run_id": run_id, "tasks": len(tasks), "repeat": settings.repeat,
           "submitted": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "parameters": parameters,
           "threads": options["threads"], "merged": False,
           "cases": [[asdict(c) for c in task] for task in tasks]}
    save_jobs(out, [*load_jobs(out), job])
    parallel = job["parameters"]["array_parallelism"]
    print(f"gradbench: submitted Slurm job array {job_id}: {len(cases)} cases in {len(tasks)} tasks, at most "
          f"{parallel} at once; logs in {logs}", file=sys.stderr)
    return job


def _sbatch_complaint(text: str) -> str:
    """sbatch's fatal line if it has one (a missing configuration), else its error lines joined, in one line."""
    lines = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    fatal = [line for line in lines if "fatal" in line.lower()]
    errors = [line.removeprefix("sbatch: error: ") for line in lines if line.startswith("sbatch: error: ")]
    return fatal[-1] if fatal else "; ".join(errors) if errors else (lines[-1] if lines else "")


@contextlib.contextmanager
def _stderr_captured():
    """Route file descriptor 2 (where sbatch, run by submitit, writes) to a temporary file; yield a
    function that returns what was written (also after the block, when sbatch has failed)."""
    import tempfile

    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lambda: "".join(said)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            said.append(capture.read().decode(errors="replace"))


def _attach(out: str, job: dict, queue: SlurmQueue, write, progress, poll_s: float = POLL_S,
            sleep=time.sleep) -> None:
    """Wait for the job's tasks to leave the queue, printing progress, then merge its parts."""
    job_id, tasks = job["job_id"], job["tasks"]
    parts = os.path.join(slurm_dir(out), "parts")
    expected = sum(len(cases) for cases in job["cases"]) * job.get("repeat", 1)
    last, silent, warned = None, False, False
    try:
        while True:
            active = queue.active(job_id)
            if active is None:
                if not silent:
                    print(f"gradbench: Slurm does not answer (squeue); still waiting for job {job_id}",
                          file=sys.stderr)
                silent = True
                sleep(poll_s * 5)
                continue
            silent = False
            waiting = [state.partition(" ")[2] for state in active.values() if state.startswith("PENDING")]
            reasons = sorted({r for r in waiting if r})
            recorded = sum(records_in(part_path(parts, job_id, t)) for t in range(tasks))
            line = (f"slurm job {job_id}: {len(waiting)} pending" + (f" ({', '.join(reasons)})" if reasons else "")
                    + f", {len(active) - len(waiting)} running, {tasks - len(active)} ended of {tasks} tasks; "
                    f"{recorded}/{expected} records")
            never = sorted(set(reasons) & NEVER_STARTS)
            if never and not warned:
                print(f"\ngradbench: warning: Slurm says job {job_id} cannot start as asked ({', '.join(never)}): "
                      f"change its settings, or cancel it: scancel {job_id}", file=sys.stderr)
                warned = True
            if line != last:
                tty = sys.stderr.isatty()
                sys.stderr.write(f"\r{line:<100}" if tty else line + "\n")
                sys.stderr.flush()
                last = line
            if not active:
                if sys.stderr.isatty():
                    sys.stderr.write("\n")
                break
            sleep(poll_s)
    except (KeyboardInterrupt, SystemExit):
        print(f"\ngradbench: Slurm job {job_id} keeps running (squeue -j {job_id}); to stop it: scancel {job_id}",
              file=sys.stderr)
        raise
    merge(out, job, queue.ended(job_id), write, progress)


