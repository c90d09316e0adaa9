"""--gpus: one worker per GPU at once. The assignment (every workload once, never two at once on one GPU)
and the pinning (a worker's CUDA_VISIBLE_DEVICES) are checked on CPU with given device ids; the real
multi-GPU run is skipped without CUDA GPUs, never faked."""
import os
import threading
import time

import pytest
import torch

from gradbench.cli import main
from gradbench.errors import BadInput
from gradbench.launch.gpus import check_cases, parse_gpus, physical_id, pinned_environment, resolve, run_on_gpus
from gradbench.case import Case
from gradbench.executors.local import run_sweep
from gradbench.executors.pool import WorkerPool
from gradbench.plan import Grid


def test_gpu_ids_are_parsed_and_checked_against_what_is_visible():
    assert parse_gpus("0,1, 3") == ("0", "1", "3")
    assert parse_gpus("all") == ("all",)
    assert resolve(("all",), 4) == ("0", "1", "2", "3")
    assert resolve(("1", "3"), 4) == ("1", "3")
    with pytest.raises(BadInput, match="GPU 1 given twice; one worker per GPU, never two on one GPU"):
        parse_gpus("1,01")
    for bad in ("", "x", "0,-1", "all,0", "1.5"):
        with pytest.raises(BadInput, match="expected GPU indexes such as 0,1,2,3, or all"):
            parse_gpus(bad)
    with pytest.raises(BadInput, match=r"GPU 4 does not exist; valid here: 0, 1, 2, 3 \(or all\)"):
        resolve(("0", "4"), 4)
    with pytest.raises(BadInput, match="no CUDA GPU is visible here"):
        resolve(("all",), 0)


def test_concurrent_workers_are_refused_on_cpu_and_on_named_gpus():
    with pytest.raises(BadInput, match="concurrent workers on the CPU would disturb each other's timings"):
        check_cases([Case(device="cpu")], ("0", "1"))
    with pytest.raises(BadInput, match="--devices cuda:1 names a GPU itself"):
        check_cases([Case(device="cuda:1", dtype="float32")], ("0", "1"))


def test_cpu_cases_with_gpus_on_the_command_line_exit_2_with_the_reason(capsys, tmp_path):
    code = main(["run", "--gpus", "0,1", "--devices", "cpu", "--models", "mlp", "--sizes", "tiny",
                 "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "concurrent workers on the CPU would disturb" in err
    assert not (tmp_path / "r.jsonl").exists()


def test_every_job_runs_once_and_never_two_at_once_on_one_gpu():
    busy: dict[str, int] = {}
    ran: list[tuple[str, int]] = []
    overlaps = []
    lock = threading.Lock()

    def run_job(gpu, job):
        with lock:
            busy[gpu] = busy.get(gpu, 0) + 1
            if busy[gpu] > 1:
                overlaps.append((gpu, job))
        time.sleep(0.01 * (job % 3))  # uneven jobs: the queue, not a fixed split, decides who takes what
        with lock:
            busy[gpu] -= 1
            ran.append((gpu, job))

    run_on_gpus(list(range(30)), ("0", "2", "5"), run_job)
    assert sorted(job for _, job in ran) == list(range(30))
    assert not overlaps
    assert {gpu for gpu, _ in ran} == {"0", "2", "5"}


def test_a_failing_job_stops_the_others_and_is_raised():
    started = []

    def run_job(gpu, job):
        started.append(job)
        if job == 0:
            raise RuntimeError("boom on gpu " + gpu)
        time.sleep(0.05)

    with pytest.raises(RuntimeError, match="boom on gpu"):
        run_on_gpus(list(range(50)), ("0", "1"), run_job)
    assert len(started) < 50


def test_a_pinned_worker_sees_only_its_gpu_and_the_manager_keeps_its_environment(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pool = WorkerPool(threads=1, record_rss=False, gpu="3")
    try:
        worker = pool.get(1)
        for _ in range(200):  # until the forked child has exec'd the interpreter: its environ is then its own
            with open(f"/proc/{worker.process.pid}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    break
            time.sleep(0.05)
        with open(f"/proc/{worker.process.pid}/environ", "rb") as f:
            environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        assert environ[b"CUDA_VISIBLE_DEVICES"] == b"3"
    finally:
        pool.stop_all()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # Slurm (or the user) gave this process two GPUs
    assert physical_id("1") == "6"
    with pinned_environment("0"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "4"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,6"


def test_the_threaded_sweep_records_each_case_once_with_its_workers_gpu_index(monkeypatch):
    """The --gpus path of run_sweep for real, on CPU cases (the refusal is settings' job): two workers at
    once, each with its own CUDA_VISIBLE_DEVICES, every case once."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cases = Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(2, 3, 4, 5), modes=("eval", "train"),
                 steps=("forward",), max_time_s=0.02).cases()
    records = []
    run_sweep(cases, records.append, threads=1, gpus=("0", "1"))
    assert sorted((r["batch_size"], r["mode"]) for r in records) == sorted((c.batch_size, c.mode) for c in cases)
    assert all(r["status"] == "ok" for r in records)
    by_workload = {}
    for r in records:
        by_workload.setdefault(r["batch_size"], set()).add(r["gpu_index"])
    assert all(len(gpus) == 1 for gpus in by_workload.values())  # a workload's modes on one GPU
    assert set().union(*by_workload.values()) <= {0, 1}


def test_retries_on_gpus_get_fresh_workers_after_the_first_rounds_threads_end(monkeypatch):
    """A worker dies with the thread that started it (PR_SET_PDEATHSIG follows threads): the retry round's
    threads must not be handed the first round's dead workers."""
    from gradbench.record import case_key

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cases = Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(2, 3), modes=("eval",), steps=("forward",),
                 max_time_s=0.02).cases()
    earlier = {(case_key(cases[0].identity()), 1)}  # in the file already, untrusted: measured again as a retry
    records = []
    run_sweep(cases, records.append, threads=1, gpus=("0", "1"), retry_untrusted=1, done=earlier,
              untrusted_done=earlier)
    fresh = next(r for r in records if (r["batch_size"], r["attempt"]) == (3, 1))
    retried = [(3, 2)] if fresh["time_trusted"] is False else []  # on a busy machine it is untrusted too
    assert sorted((r["batch_size"], r["attempt"]) for r in records) == [(2, 2), (3, 1), *retried]
    assert all(r["status"] == "ok" for r in records)


def test_a_starting_worker_survives_the_signals_its_manager_handles():
    """Slurm signals every process of a task (USR2 before the time limit, TERM on scancel): a worker still
    importing torch must not die of them, nor a running one; the manager decides."""
    import signal

    pool = WorkerPool(threads=1, record_rss=False)
    try:
        worker = pool.get(1)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # from the fork on, through the interpreter's start and imports
            for signum in (signal.SIGUSR2, signal.SIGTERM):
                os.kill(worker.process.pid, signum)
            time.sleep(0.01)
        assert worker.process.is_alive()
        worker.conn.send(None)  # and it still answers: asked to stop, it exits cleanly
        worker.process.join(timeout=60)
        assert worker.process.exitcode == 0
    finally:
        pool.stop_all()


def test_a_pool_replaces_a_worker_that_died_while_idle():
    pool = WorkerPool(threads=1, record_rss=False)
    try:
        first = pool.get(1)
        first.process.kill()
        first.process.join()
        second = pool.get(1)
        assert second is not first and second.process.is_alive()
    finally:
        pool.stop_all()


@pytest.mark.gpu
@pytest.mark.multi_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (run on a multi-GPU machine)")
def test_two_gpus_measure_at_once_each_on_its_own(tmp_path):
    out = tmp_path / "g.jsonl"
    code = main(["run", "--gpus", "0,1", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "8", "64",
                 "--modes", "eval_no_grad", "train", "--max-time", "0.05", "--no-report", "--out", str(out)])
    assert code == 0
    import json

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["device"] for r in records} == {"cuda"}
    assert {r["gpu_index"] for r in records} == {0, 1}
