"""Against a real Slurm (tools/slurm-local.sh start; .ci/run starts one): records say where they ran.

Skipped, with the reason, where no cluster answers (SLURM_CONF unset or sinfo failing).
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from gradbench.env import launch_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_launch_fields_read_slurms_environment():
    assert launch_fields({})["launcher"] == "local"
    inside = launch_fields({"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "55", "SLURM_ARRAY_TASK_ID": "2"})
    assert inside == {"launcher": "slurm", "slurm_job_id": 55, "slurm_array_task_id": 2, "host": socket.gethostname()}
    assert launch_fields({"SLURM_JOB_ID": "57"})["slurm_job_id"] == 57  # a plain job, not an array


@pytest.fixture(scope="module")
def slurm():
    if not shutil.which("sbatch") or not os.environ.get("SLURM_CONF"):
        pytest.skip("no Slurm cluster: run tools/slurm-local.sh start and export the SLURM_CONF it prints")
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if state.returncode != 0 or "idle" not in state.stdout.split() and "mixed" not in state.stdout.split():
        pytest.skip(f"Slurm does not answer with a free node: {(state.stderr or state.stdout).strip()[:200]}")


def test_records_measured_in_a_slurm_array_name_the_array_task_and_host(slurm, tmp_path):
    command = (f"cd {REPO} && {sys.executable} -m gradbench.cli case --model mlp --size tiny --batch-size 2 "
               f"--mode eval --max-time 0.02 > {tmp_path}/task_$SLURM_ARRAY_TASK_ID.json")
    submitted = subprocess.run(["sbatch", "--parsable", "--wait", "--array=0-1", "--time=5", "-o", f"{tmp_path}/%a.log",
                                "--wrap", command], capture_output=True, text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stderr
    job = int(submitted.stdout.strip().split(";")[0])
    records = {t: json.loads((tmp_path / f"task_{t}.json").read_text()) for t in (0, 1)}
    for task, record in records.items():
        assert record["status"] == "ok"
        assert (record["launcher"], record["slurm_job_id"], record["slurm_array_task_id"]) == ("slurm", job, task)
        assert record["host"] == socket.gethostname()
