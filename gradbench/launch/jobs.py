"""The Slurm jobs submitted for a results file, kept beside it (OUT-slurm/job.json). Apart from slurm.py
because every run reads it: a local run refuses a file a Slurm job still owns, and must not load the
Slurm launcher to find out."""
from __future__ import annotations

import json
import os

from ..atomic import write_text
from ..errors import BadInput


def slurm_dir(out: str) -> str:
    """results/x.jsonl -> results/x-slurm/ (job.json, parts/, logs/)"""
    return (out[: -len(".jsonl")] if out.endswith(".jsonl") else out) + "-slurm"


def _job_file(out: str) -> str:
    return os.path.join(slurm_dir(out), "job.json")


def load_jobs(out: str) -> list[dict]:
    """The Slurm jobs submitted for ``out`` (newest last). JSON, written by gradbench; never unpickled.
    One that is not gradbench's, or that belongs to another results file, is refused in one line."""
    path = _job_file(out)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the Slurm job file {path!r} ({exc}); move it away to start afresh") from None
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, list) or not all(_is_job(j) for j in jobs):
        raise BadInput(f"the Slurm job file {path!r} is not one gradbench wrote; move it away to start afresh")
    owner = data.get("out")  # its file name: the folder may be moved or copied with its results file
    if owner is not None and owner != os.path.basename(out):
        raise BadInput(f"the Slurm folder {slurm_dir(out)!r} belongs to the results file {owner!r}, not {out!r}; "
                       "name another --out")
    return jobs


def _is_job(job) -> bool:
    """job.json's entry as gradbench writes it, down to every case being a Case."""
    from ..case import Case

    if not isinstance(job, dict) or not {"job_id", "run_id", "tasks", "merged", "cases"} <= set(job):
        return False
    if not (isinstance(job["job_id"], str) and job["job_id"].isdigit() and isinstance(job["merged"], bool)
            and isinstance(job["tasks"], int) and isinstance(job["cases"], list) and len(job["cases"]) == job["tasks"]
            and isinstance(job.get("repeat", 1), int) and job.get("repeat", 1) >= 1):
        return False
    try:
        for task in job["cases"]:
            for fields in task:
                Case(**fields).validate(here=False)  # names and values: a hand-edited "abc" batch is refused
    except (TypeError, ValueError, AttributeError):
        return False
    return all(isinstance(task, list) for task in job["cases"])


def save_jobs(out: str, jobs: list[dict]) -> None:
    write_text(_job_file(out), json.dumps({"out": os.path.basename(out), "jobs": jobs}, indent=1) + "\n",
               what="the Slurm job file")


def unmerged(out: str) -> list[dict]:
    return [job for job in load_jobs(out) if not job["merged"]]
