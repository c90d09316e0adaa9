"""What Slurm says of a submitted job array: squeue for the tasks still queued, scontrol for the ones that
have left it (never accounting, which many clusters lack). Read-only."""
from __future__ import annotations

import re
import subprocess

# squeue reasons for which a pending job waits for ever, until its request or the cluster changes
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                "DependencyNeverSatisfied", "InvalidAccount", "InvalidQOS", "QOSMaxGRESPerJob",
                "ReqNodeNotAvail", "AssocMaxJobsLimit", "AssocGrpCpuLimit", "Resources_Unavailable"}


class SlurmQueue:
    """squeue and scontrol, read-only. ``run``: (argv) -> (returncode, stdout, stderr), injectable."""

    def __init__(self, run=None):
        self._run = run or _run

    def active(self, job_id: str) -> dict[int, str] | None:
        """Array task -> state (PENDING, RUNNING, COMPLETING, ...) of the tasks still in the queue;
        {} when none is; None when Slurm does not answer. A pending task's state carries Slurm's reason
        after a space (PENDING Priority)."""
        code, out, err = self._run(["squeue", "-h", "-r", "-j", str(job_id), "-o", "%K|%T|%r"])
        if code != 0:
            return {} if "invalid job id" in err.lower() else None
        tasks = {}
        for line in out.splitlines():
            index, _, rest = line.strip().partition("|")
            state, _, reason = rest.partition("|")
            if index.isdigit() or index == "N/A":  # N/A: a job of one task, which submitit submits as no array
                pending = state.strip() == "PENDING" and reason.strip() not in ("", "None")
                tasks[int(index) if index.isdigit() else 0] = f"PENDING {reason.strip()}" if pending else state.strip()
        return tasks

    def ended(self, job_id: str) -> dict[int, dict]:
        """Array task -> {state, exit_code, node, reason} for the tasks Slurm still remembers (for
        MinJobAge, 300 s by default, after they end). Pending tasks and forgotten ones are absent."""
        code, out, _ = self._run(["scontrol", "show", "job", str(job_id), "-o"])
        if code != 0:
            return {}
        tasks = {}
        for line in out.splitlines():
            fields = dict(re.findall(r"(?:^|\s)(ArrayTaskId|JobState|ExitCode|NodeList|Reason)=(\S*)", line))
            index = fields.get("ArrayTaskId", "0")  # none: a job of one task, not an array
            if index.isdigit():
                tasks[int(index)] = {
                    "state": fields.get("JobState"), "exit_code": fields.get("ExitCode"),
                    "node": None if fields.get("NodeList") in (None, "", "(null)") else fields["NodeList"],
                    "reason": None if fields.get("Reason") in (None, "None") else fields["Reason"]}
        return tasks


def _run(argv: list[str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, "", str(exc)
    return done.returncode, done.stdout, done.stderr
