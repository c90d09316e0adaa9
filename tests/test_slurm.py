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
    assert inside == {"launcher": "slurm", "slurm_job_id": 55, "slurm_array_task_id": 2, "host": socket.gethostname(),
                      "gpu_index": None}
    assert launch_fields({"CUDA_VISIBLE_DEVICES": "3"})["gpu_index"] == 3
    assert launch_fields({"CUDA_VISIBLE_DEVICES": "0,1"})["gpu_index"] is None  # saw two: no one GPU
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


# ---------------------------------------------------------------- --launcher slurm, without a cluster

from gradbench.errors import BadInput  # noqa: E402
from gradbench.launch import slurm as launch  # noqa: E402
from gradbench.executors.base import Progress  # noqa: E402
from gradbench.launch import slurm_merge, slurm_queue  # noqa: E402
from gradbench.plan import Grid  # noqa: E402

SMALL = dict(models=("mlp",), sizes=("tiny",), batch_sizes=(2, 4, 8), modes=("eval", "train"),
             steps=("forward",), max_time_s=0.02)


def test_tasks_get_whole_workloads_about_evenly():
    cases = Grid(**{**SMALL, "batch_sizes": (2, 4, 8, 16, 32)}).cases()
    tasks = launch.split_among(cases, 3)
    assert sorted(len(t) for t in tasks) == [2, 4, 4]
    assert sorted(map(repr, (c for t in tasks for c in t))) == sorted(map(repr, cases))
    for task in tasks:  # a workload's modes never split across tasks (nodes)
        assert all({c.workload_key for c in task} & {c.workload_key for c in other} == set()
                   for other in tasks if other is not task)
    assert len(launch.split_among(cases, 50)) == 5  # fewer workloads than jobs: fewer tasks


def test_slurm_options_name_submitits_parameters():
    assert launch.parse_pairs(["mem=16G", "qos=high", "exclusive=true", "mem=32G"]) == \
        (("mem", "32G"), ("qos", "high"), ("exclusive", True))
    with pytest.raises(BadInput, match=r"unknown --slurm-option key 'colour'; valid keys: account, "):
        launch.parse_pairs(["colour=blue"])
    with pytest.raises(BadInput, match="give it as --slurm-partition"):
        launch.parse_pairs(["partition=gpu"])
    with pytest.raises(BadInput, match="expected KEY=VALUE"):
        launch.parse_pairs(["mem"])
    with pytest.raises(BadInput, match="unknown --slurm-option key 'nodes'"):  # would run a task twice
        launch.parse_pairs(["nodes=2"])
    assert launch.parse_pairs(["exclusive=true", "exclusive=false"]) == ()  # sbatch has no --exclusive=False
    options = launch.SlurmOptions(jobs=4, partition="gpu", constraint="h100", gpus_per_task=1, time_min=5,
                                  parallel=2, extra=(("mem", "8G"),))
    assert options.executor_parameters(tasks=4) == {
        "time": 5, "signal_delay_s": 30, "job_name": "gradbench", "array_parallelism": 2, "partition": "gpu",
        "constraint": "h100", "gpus_per_task": 1, "mem": "8G"}
    assert launch.signal_delay_s(60) == 90 and launch.signal_delay_s(1) == 10


def test_queue_states_are_read_from_squeue_and_scontrol_only():
    def fake(argv):
        if argv[0] == "squeue":
            return 0, "1|PENDING|JobArrayTaskLimit\n2|PENDING|None\n0|RUNNING|None\n", ""
        return 0, ("JobId=8 ArrayJobId=7 ArrayTaskId=0 JobState=CANCELLED Reason=None ExitCode=0:15 "
                   "ReqNodeList=(null) ExcNodeList=(null) NodeList=node3 BatchHost=node3\n"
                   "JobId=7 ArrayJobId=7 ArrayTaskId=1-2%1 JobState=PENDING Reason=JobArrayTaskLimit "
                   "NodeList=(null)\n"), ""

    queue = slurm_queue.SlurmQueue(fake)
    assert queue.active("7") == {0: "RUNNING", 1: "PENDING JobArrayTaskLimit", 2: "PENDING"}
    assert queue.ended("7") == {0: {"state": "CANCELLED", "exit_code": "0:15", "node": "node3", "reason": None}}
    gone = slurm_queue.SlurmQueue(lambda argv: (1, "", "slurm_load_jobs error: Invalid job id specified"))
    assert gone.active("7") == {} and gone.ended("7") == {}
    single = slurm_queue.SlurmQueue(lambda argv: (0, "N/A|RUNNING\n", "") if argv[0] == "squeue" else
                               (0, "JobId=9 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:1 NodeList=n1\n", ""))
    assert single.active("9") == {0: "RUNNING"}  # submitit submits a job of one task as no array
    assert single.ended("9") == {0: {"state": "TIMEOUT", "exit_code": "0:1", "node": "n1", "reason": "TimeLimit"}}
    silent = slurm_queue.SlurmQueue(lambda argv: (1, "", "Unable to contact slurm controller (connect failure)"))
    assert silent.active("7") is None  # not "ended": the submitter keeps waiting


def _job(out, cases_by_task, job_id="41"):
    """A job file as _submit writes it."""
    job = {"job_id": job_id, "run_id": "r1", "tasks": len(cases_by_task), "repeat": 1, "merged": False,
           "threads": 1, "cases": [[c.__dict__ for c in task] for task in cases_by_task]}
    launch.save_jobs(str(out), [job])
    return job


def test_merge_appends_each_record_once_and_records_unreached_cases_as_crashed_with_the_slurm_state(tmp_path):
    from gradbench.session import Session
    from gradbench.results import read_jsonl
    from gradbench.storage import JsonlWriter

    out = tmp_path / "m.jsonl"
    cases = Grid(**SMALL).cases()
    tasks = launch.split_among(cases, 2)
    job = _job(out, tasks)
    parts = tmp_path / "m-slurm" / "parts"
    measured = tasks[0][:3]  # task 0 got through three cases, task 1 none
    with JsonlWriter(parts / "41_0.jsonl") as writer:
        for case in measured:
            writer.write({**Session("r1").failure(case, "ok", None), "slurm_job_id": 41,
                          "slurm_array_task_id": 0, "repeat": 1, "attempt": 1})
    ended = {0: {"state": "CANCELLED", "exit_code": "0:15", "node": "node3", "reason": None}}
    with JsonlWriter(out) as writer:
        slurm_merge.merge(str(out), job, ended, writer.write, Progress(total=0))
    records = read_jsonl(out)[0]
    assert len(records) == len(cases)
    crashed = [r for r in records if r["status"] == "crashed"]
    assert len(crashed) == len(cases) - 3
    by_task = {r["slurm_array_task_id"]: r for r in crashed}
    assert by_task[0]["slurm_state"] == "CANCELLED" and by_task[0]["host"] == "node3"
    assert "Slurm task 41_0 did not record this case: it ended CANCELLED (exit code 0:15)" in by_task[0]["error"]
    assert by_task[1]["slurm_state"] is None and "Slurm no longer knows it" in by_task[1]["error"]
    assert launch.load_jobs(str(out))[0]["merged"] is True
    with JsonlWriter(out) as writer:  # a merge cut short and run again adds nothing twice
        slurm_merge.merge(str(out), job, ended, writer.write, Progress(total=0))
    assert len(read_jsonl(out)[0]) == len(cases)


def test_bad_slurm_settings_exit_2_with_one_line_and_touch_nothing(tmp_path, monkeypatch, capsys):
    from gradbench.cli import main

    out = tmp_path / "s.jsonl"
    tiny = ["run", "--models", "mlp", "--sizes", "tiny", "--out", str(out)]
    cases = [
        (["--jobs", "3"], "--jobs is a Slurm setting; it needs --launcher slurm"),
        (["--launcher", "slurm", "--shard", "1/2"], "give --jobs N instead of --shard"),
        (["--launcher", "slurm", "--jobs", "0"], "bad --jobs 0; it must be >= 1"),
        (["--launcher", "slurm", "--slurm-option", "colour=blue"], "unknown --slurm-option key 'colour'"),
        (["--launcher", "slurm", "--gpus", "0,1", "--devices", "cuda"], "Slurm chooses each task's GPUs"),
        (["--launcher", "slurm", "--gpus", "all", "--devices", "cuda"], "give --slurm-gpus-per-task N"),
        (["--gpus", "0,0"], "GPU 0 given twice"),
        (["--launcher", "slurm", "--slurm-option", "exclusive"], "expected KEY=VALUE"),
    ]
    for args, message in cases:  # in-process: refused before anything runs
        assert main([*tiny, *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and message in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main([*tiny, "--launcher", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "'sbatch' is not on PATH" in err, err
    assert not out.exists()


def test_slurm_settings_come_from_the_config_file_too(tmp_path, monkeypatch):
    import argparse

    from gradbench.settings import run_settings

    monkeypatch.setattr(launch, "check_cluster", lambda: None)
    config = tmp_path / "c.toml"
    config.write_text('[run]\nlauncher = "slurm"\njobs = 4\nslurm_partition = "gpu"\nslurm_time = 20\n'
                      'slurm_parallel = 1\nslurm_constraint = "h100"\nslurm_gpus_per_task = 1\n'
                      '[run.slurm_options]\nmem = "16G"\naccount = "bench"\n')
    args = argparse.Namespace(config=str(config), models=["mlp"], sizes=["tiny"], slurm_options=["qos=high"])
    settings = run_settings(args)
    assert settings.launcher == "slurm"
    assert settings.slurm == launch.SlurmOptions(jobs=4, partition="gpu", constraint="h100", gpus_per_task=1,
                                                 time_min=20, parallel=1,
                                                 extra=(("mem", "16G"), ("account", "bench"), ("qos", "high")))
    assert {c.device for c in settings.cases} == {"cpu", "cuda"}  # the tasks get GPUs: cuda, though none is here
    config.write_text('[run]\nlauncher = "slurm"\n[run.slurm_options]\nmem = {a = 1}\n')
    with pytest.raises(BadInput, match=r"bad slurm_options.mem in --config .*: \{'a': 1\}; expected a string"):
        run_settings(argparse.Namespace(config=str(config)))


def test_a_job_file_gradbench_did_not_write_or_of_another_results_file_is_refused_in_one_line(tmp_path):
    out = tmp_path / "j.jsonl"
    folder = tmp_path / "j-slurm"
    folder.mkdir()
    good = {"job_id": "5", "run_id": "r", "tasks": 1, "merged": False, "cases": [[Grid(**SMALL).cases()[0].__dict__]]}
    case = good["cases"][0][0]
    for jobs in ([{"job_id": "x", "tasks": 1, "merged": False}], [{**good, "cases": 5}], [{**good, "job_id": "x"}],
                 [{**good, "cases": [[{"model": "mlp", "bogus": 1}]]}], [{**good, "tasks": 2}], "no list",
                 [{**good, "cases": [[{**case, "batch_size": "abc"}]]}], [{**good, "cases": [[{**case, "mode": "x"}]]}]):
        (folder / "job.json").write_text(json.dumps({"jobs": jobs}))
        with pytest.raises(BadInput, match="is not one gradbench wrote; move it away"):
            launch.load_jobs(str(out))
    (folder / "job.json").write_text("{")
    with pytest.raises(BadInput, match="cannot read the Slurm job file"):
        launch.load_jobs(str(out))
    launch.save_jobs(str(out), [good])
    assert launch.load_jobs(str(out)) == [good]
    with pytest.raises(BadInput, match=r"belongs to the results file 'j.jsonl', not '.*j'; name another --out"):
        launch.load_jobs(str(tmp_path / "j"))  # --out j and --out j.jsonl would share j-slurm/
    import shutil

    shutil.copytree(folder, tmp_path / "moved" / "j-slurm")  # a results folder moved or copied keeps its job
    assert launch.load_jobs(str(tmp_path / "moved" / "j.jsonl")) == [good]


def test_resuming_a_job_under_other_settings_is_refused_before_waiting_for_it(tmp_path, monkeypatch):
    import argparse

    from gradbench.settings import run_settings

    monkeypatch.setattr(launch, "check_cluster", lambda: None)
    out = tmp_path / "o.jsonl"
    job = _job(out, [Grid(**SMALL).cases()])  # measured with max_time 0.02
    args = dict(models=["mlp"], sizes=["tiny"], batch_sizes=["2"], launcher="slurm", resume=True, out=str(out))
    same = run_settings(argparse.Namespace(**args, max_time=0.02))
    launch.check_job_settings(str(out), job, same)
    other = run_settings(argparse.Namespace(**args, max_time=0.05))
    with pytest.raises(BadInput, match=r"cannot --resume .* with --max-time 0.05: its records were measured with "
                                       r"max_time_s 0.02"):
        launch.check_job_settings(str(out), job, other)


def test_a_results_file_with_an_unmerged_slurm_job_is_not_resumed_locally(tmp_path):
    out = tmp_path / "u.jsonl"
    _job(out, [Grid(**SMALL).cases()])
    result = subprocess.run([sys.executable, "-m", "gradbench.cli", "run", "--models", "mlp", "--sizes", "tiny",
                             "--out", str(out), "--resume"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "belongs to Slurm job 41, not yet merged" in result.stderr and "--launcher slurm --resume" in result.stderr


# ---------------------------------------------------------------- --launcher slurm, on the local cluster

SLURM_RUN = ["--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "4", "8", "--modes", "eval", "train",
             "--steps", "forward", "--max-time", "0.02", "--launcher", "slurm", "--slurm-time", "5"]


def _gradbench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "gradbench.cli", "run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _records(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def _cases(records):
    from gradbench.record import case_key

    keys = [case_key(r) for r in records]
    return {k: keys.count(k) for k in keys}


def test_a_slurm_sweep_records_every_case_exactly_once_and_its_report_reads_it(slurm, tmp_path):
    out = tmp_path / "a.jsonl"
    result = _gradbench(*SLURM_RUN, "--jobs", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = _records(out)
    assert len(records) == 6 and set(_cases(records).values()) == {1}
    assert {r["status"] for r in records} == {"ok"}
    job = launch.load_jobs(str(out))
    assert len(job) == 1 and job[0]["merged"] and job[0]["tasks"] == 3
    assert {(r["launcher"], r["slurm_job_id"]) for r in records} == {("slurm", int(job[0]["job_id"]))}
    assert {r["slurm_array_task_id"] for r in records} == {0, 1, 2}
    for task in range(3):  # a task's records: one workload, so its modes were compared in one process
        assert len({r["batch_size"] for r in records if r["slurm_array_task_id"] == task}) == 1
    assert f"slurm job {job[0]['job_id']}: 0 pending, 0 running, 3 ended of 3 tasks; 6/6 records" in result.stderr
    assert (tmp_path / "a-report" / "report.html").exists()


def _wait_for(predicate, timeout=120, what="a condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_submitter_leaves_the_array_running_and_resume_completes_it_exactly_once(slurm, tmp_path):
    import signal

    out = tmp_path / "k.jsonl"
    args = [*SLURM_RUN, "--jobs", "3", "--slurm-parallel", "1", "--out", str(out), "--no-report"]
    submitter = subprocess.Popen([sys.executable, "-m", "gradbench.cli", "run", *args], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "k-slurm" / "parts"
    _wait_for(lambda: parts.exists() and any(p.stat().st_size for p in parts.iterdir()), what="a first record")
    submitter.send_signal(signal.SIGKILL)
    submitter.wait()
    job_id = launch.load_jobs(str(out))[0]["job_id"]
    assert slurm_queue.SlurmQueue().active(job_id), "the array should still be running after its submitter died"
    resumed = _gradbench(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "submitted" not in resumed.stderr  # re-attached: nothing submitted again
    records = _records(out)
    assert len(records) == 6 and set(_cases(records).values()) == {1}
    assert {r["status"] for r in records} == {"ok"}
    assert [j["job_id"] for j in launch.load_jobs(str(out))] == [job_id]


def test_a_task_cancelled_with_scancel_is_recorded_as_crashed_with_its_slurm_state(slurm, tmp_path):
    out = tmp_path / "c.jsonl"
    args = ["--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "4", "--modes", "eval", "train", "frozen",
            "no_grad", "--steps", "forward", "--max-time", "1", "--launcher", "slurm", "--slurm-time", "5",
            "--jobs", "2", "--slurm-parallel", "1", "--out", str(out), "--no-report"]
    submitter = subprocess.Popen([sys.executable, "-m", "gradbench.cli", "run", *args], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = lambda: next((tmp_path / "c-slurm" / "parts").glob("*_0.jsonl"), None)  # noqa: E731
    _wait_for(lambda: (tmp_path / "c-slurm" / "parts").exists() and part() and part().stat().st_size > 0,
              what="the task's first record")
    job_id = launch.load_jobs(str(out))[0]["job_id"]
    subprocess.run(["scancel", f"{job_id}_0"], check=True, timeout=60)
    _, err = submitter.communicate(timeout=300)
    assert submitter.returncode == 0, err
    records = _records(out)
    assert set(_cases(records).values()) == {1} and len(records) == 8
    crashed = [r for r in records if r["status"] == "crashed"]
    assert {r["slurm_array_task_id"] for r in crashed} == {0}
    assert crashed and all(r["slurm_state"] == "CANCELLED" for r in crashed)
    assert all(f"Slurm task {job_id}_0 did not record this case: it ended CANCELLED" in r["error"] for r in crashed)
    assert any(r["status"] == "ok" for r in records)  # what it measured before the cancel is kept


def test_resume_after_the_job_is_gone_submits_only_the_missing_cases(slurm, tmp_path):
    import signal

    out = tmp_path / "g.jsonl"
    args = [*SLURM_RUN, "--jobs", "3", "--slurm-parallel", "1", "--out", str(out), "--no-report"]
    submitter = subprocess.Popen([sys.executable, "-m", "gradbench.cli", "run", *args], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "g-slurm" / "parts"
    _wait_for(lambda: parts.exists() and any(p.stat().st_size for p in parts.iterdir()), what="a first record")
    submitter.send_signal(signal.SIGKILL)
    submitter.wait()
    first = launch.load_jobs(str(out))[0]["job_id"]
    subprocess.run(["scancel", first], check=True, timeout=60)
    _wait_for(lambda: not slurm_queue.SlurmQueue().active(first), what="the job to leave the queue")
    resumed = _gradbench(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    jobs = launch.load_jobs(str(out))
    assert [j["job_id"] for j in jobs][0] == first and len(jobs) == 2 and all(j["merged"] for j in jobs)
    records = _records(out)
    measured_by_first = {tuple(r[k] for k in ("batch_size", "mode")) for r in records
                         if r["slurm_job_id"] == int(first) and r["status"] == "ok"}
    resubmitted = {(c["batch_size"], c["mode"]) for task in jobs[1]["cases"] for c in task}
    assert measured_by_first and resubmitted and not measured_by_first & resubmitted
    assert len(measured_by_first | resubmitted) == 6
    ok = _cases([r for r in records if r["status"] == "ok"])
    assert len(ok) == 6 and set(ok.values()) == {1}


def test_a_job_slurm_refuses_is_one_line_and_leaves_nothing_behind(slurm, tmp_path):
    out = tmp_path / "p.jsonl"
    result = _gradbench(*SLURM_RUN, "--slurm-partition", "no_such_partition", "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "gradbench: error: Slurm refused the job array: invalid partition specified: no_such_partition; "
        "Batch job submission failed: Invalid partition name specified"]
    assert not (tmp_path / "p-slurm").exists() and not out.exists()


SLOW_MODEL = '''
import time
import torch


def build(size="tiny"):
    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            time.sleep(30)
            return self.linear(x)

    return Slow(), lambda batch: torch.randn(batch, 4)
'''


def test_a_task_past_its_time_limit_is_recorded_as_crashed_with_state_timeout(slurm, tmp_path):
    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    out = tmp_path / "t.jsonl"
    result = _gradbench("--models", f"{tmp_path}/slow_model.py:build", "--sizes", "tiny", "--batch-sizes", "1",
                        "--modes", "eval", "--steps", "forward", "--launcher", "slurm", "--slurm-time", "1",
                        "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    [record] = _records(out)
    assert (record["status"], record["slurm_state"]) == ("crashed", "TIMEOUT")
    assert "it ended TIMEOUT" in record["error"] and "give --slurm-time more" in record["error"]
