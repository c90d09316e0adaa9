"""A job array's part files into --out, once its tasks have left the queue: every record once, and every
case a task did not record as `crashed`, with the task's Slurm state; then the job is marked merged."""
from __future__ import annotations

import os
import sys

from ..record import Record
from .jobs import load_jobs, save_jobs, slurm_dir
from .slurm_task import part_path


def records_in(path: str) -> int:
    """How many records a task's part file holds so far (one a line; none where there is no file yet)."""
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def merge(out: str, job: dict, ended: dict[int, dict], write, progress) -> None:
    """Append the job's part files to --out, skipping records already there (a merge cut short and run
    again); record every case a task did not reach as crashed, with its Slurm state; mark the job merged."""
    from ..case import Case
    from ..record import case_key
    from ..reading import ResultsFileError
    from ..results import read_jsonl

    def key(record: dict) -> tuple:
        return (record.get("run_id"), record.get("slurm_job_id"), record.get("slurm_array_task_id"),
                case_key(record), record.get("repeat") or 1, record.get("attempt") or 1)

    try:
        present = {key(r) for r in read_jsonl(out)[0]} if os.path.exists(out) else set()
    except ResultsFileError:
        present = set()
    parts = os.path.join(slurm_dir(out), "parts")

    def emit(record: dict) -> None:
        if key(record) in present:
            return
        write(record)
        present.add(key(record))
        progress.total += 1
        progress.count(record)

    for task, cases in enumerate(job["cases"]):
        path = part_path(parts, job["job_id"], task)
        try:
            records, warnings = read_jsonl(path) if os.path.exists(path) else ([], [])
        except ResultsFileError as exc:
            records, warnings = [], [str(exc)]
        for warning in warnings:
            print(f"gradbench: warning: task {job['job_id']}_{task}: {warning}", file=sys.stderr)
        for record in records:
            emit(record)
        seen = {(case_key(r), r.get("repeat") or 1) for r in records}
        for fields in cases:
            case = Case(**fields)
            for repeat in range(1, job.get("repeat", 1) + 1):
                if (case_key(case.identity()), repeat) not in seen:
                    emit(crashed_record(case, job, task, ended.get(task), repeat, out))
    job["merged"] = True
    jobs = load_jobs(out)
    save_jobs(out, [job if j["job_id"] == job["job_id"] else j for j in jobs])


def crashed_record(case, job: dict, task: int, info: dict | None, repeat: int, out: str) -> Record:
    """A case whose task ended without recording it: crashed, with what Slurm says of the task. The
    machine fields are the node's (where known), not this submitting machine's."""
    from ..session import failure_record

    name = f"{job['job_id']}_{task}" if job["tasks"] > 1 else job["job_id"]  # submitit: one task is no array
    log = os.path.join(slurm_dir(out), "logs", name)
    if info is None:
        state, what = None, "Slurm no longer knows it (cancelled before it started, or forgotten after MinJobAge)"
    else:
        state = info["state"]
        what = f"it ended {state}" + (f" (exit code {info['exit_code']})" if info.get("exit_code") else "") + \
            (f", reason {info['reason']}" if info.get("reason") else "")
        if state == "TIMEOUT":
            what += f"; its time limit was {job.get('parameters', {}).get('time', '?')} min: give --slurm-time more"
    message = f"Slurm task {name} did not record this case: {what}" + (f"; its logs: {log}/" if os.path.isdir(log) else "")
    record = failure_record(case, job["run_id"], "crashed", message)
    node = info.get("node") if info else None
    return record.replace(launcher="slurm", slurm_job_id=int(job["job_id"]), slurm_array_task_id=task, slurm_state=state,
                  host=node, machine=node, cpu=None, cpu_count=None, gpu=None, gpu_count=None, driver=None, platform=None,
                  gpu_index=None, threads=job.get("threads"), repeat=repeat, attempt=1)
