"""What one task of a `--launcher slurm` job array runs (through submitit): its cases, measured by the
usual sweep machinery into its own part file. A requeued task (preemption, node failure) resumes its
part; it never touches --out, which the submitting command merges into."""
from __future__ import annotations

import os
import signal
import sys


def part_path(parts_dir: str, job_id, task: int) -> str:
    return os.path.join(parts_dir, f"{job_id}_{task}.jsonl")


def run_part(parts_dir: str, task: int, cases: list, options: dict) -> dict:
    """Measure ``cases`` into parts_dir/JOB_TASK.jsonl. ``options``: run_id, timeout_s, isolate, threads,
    repeat, retry_untrusted, gpus. Returns counts (submitit keeps them; gradbench reads the part file)."""
    from ..console import ProgressPrinter
    from ..storage import JsonlWriter, ResultsLock
    from ..resume import previous_results
    from ..executors.local import run_sweep

    job_id = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") or "local"
    task = int(os.environ.get("SLURM_ARRAY_TASK_ID", task))
    part = part_path(parts_dir, job_id, task)
    print(f"gradbench task {job_id}_{task}: {len(cases)} cases -> {part}", flush=True)
    # scancel or the time limit: stop at once (submitit would let the task measure on until killed); the
    # workers are stopped, the part keeps what is done, and the submitter records the rest with Slurm's state
    signal.signal(signal.SIGTERM, _stop)
    # submitit's warning signal before the time limit would end the task as FAILED; measure on instead, so
    # that Slurm itself ends it, and says TIMEOUT (or PREEMPTED)
    signal.signal(signal.SIGUSR2, _warned)
    gpus = options.get("gpus")
    if gpus:
        gpus = _gpus_here(gpus, part, cases, options)
        if gpus is None:
            return {"part": part, "records": len(cases), "statuses": {"error": len(cases)}}
    with ResultsLock(part):  # a requeued task and a stale one never write one part together
        previous = previous_results(part, cases, options["repeat"], options["threads"], this_machine=False)
        with JsonlWriter(part) as writer:
            progress = run_sweep(cases, writer.write, run_id=options["run_id"], timeout_s=options["timeout_s"],
                                 isolate=options["isolate"], threads=options["threads"], repeat=options["repeat"],
                                 retry_untrusted=options["retry_untrusted"], done=previous.done,
                                 untrusted_done=previous.untrusted, on_record=ProgressPrinter(sys.stdout),
                                 gpus=gpus)
    return {"part": part, "records": progress.done, "statuses": progress.statuses}


def _stop(signum, frame):
    raise SystemExit(128 + signum)


def _warned(signum, frame):
    print("gradbench: Slurm warns of the time limit (or a preemption); measuring on until it stops this task",
          flush=True)


def _gpus_here(gpus, part: str, cases: list, options: dict):
    """`--gpus all`: the GPUs Slurm gave this task; none visible: every case an error saying so, and None."""
    import torch

    from ..errors import BadInput
    from ..storage import JsonlWriter
    from ..session import failure_record
    from .gpus import resolve

    try:
        return resolve(gpus, torch.cuda.device_count())
    except BadInput as exc:
        with JsonlWriter(part) as writer:
            for case in cases:
                for repeat in range(1, options["repeat"] + 1):
                    writer.write({**failure_record(case, options["run_id"], "error", f"{exc} (on this node)"),
                                  "repeat": repeat, "attempt": 1})
        return None
