"""The asv and pytest-benchmark harnesses, run for real on the quick grid (as CI does): the same record
fields, measured by the same pipeline, come out of every front-end."""
import json
import math
import os
import subprocess
import sys
import time

import pytest

import gradbench
from gradbench.harness import GRIDS, BenchmarkCase, NotApplicable, grid_from_env
from gradbench.harness import workload as harness_workload
from gradbench.record import type_errors
from gradbench.schema import RECORD_FIELDS, SCHEMA
from gradbench.importers.asv import read_asv_results
from gradbench.importers.pytest_benchmark import read_pytest_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ("dropout_active", "bn_batch_stats", "bn_stats_updated", "graph_recorded", "fastpath")
NUMBERS = ("peak_bytes", "saved_bytes", "batch_size", "params", "grads_computed")
IDENTITY = ("model", "size", "device", "dtype", "mode", "step")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _run_case_record(mode, step="forward"):
    return gradbench.run_case(model="mlp", size="tiny", batch_size=8, mode=mode, step=step, max_time_s=0.02)


def _same_fields_as_gradbench_run(records):
    """Every record has exactly the schema's fields, of the schema's kinds."""
    for r in records:
        assert set(r) == set(RECORD_FIELDS), set(r) ^ set(RECORD_FIELDS)
        assert type_errors(r) == [], type_errors(r)


def test_pytest_benchmark_suite_writes_extra_info(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--gradbench-grid", "smoke", "--benchmark-json", str(out),
         "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        # under pytest-xdist (make test) this test's worker id would make pytest-benchmark disable itself
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine_info"]["torch"] and "gpu" in data["machine_info"]
    benchmarks = data["benchmarks"]
    grid = GRIDS["smoke"]
    cpu_cases = len(grid.models) * len(grid.sizes) * len(grid.batch_sizes) * len(grid.modes)
    graph_modes = sum(m in ("train", "eval", "finetune_head") for m in grid.modes)
    assert len(benchmarks) == cpu_cases + graph_modes * cpu_cases // len(grid.modes)
    for b in benchmarks:
        info = b["extra_info"]
        for key in NUMBERS:
            assert _is_number(info[key]), (key, info[key])
        for key in FLAGS:
            assert info[key] in (0, 1, None), (key, info[key])
        for key in IDENTITY:
            assert isinstance(info[key], str)
        assert info["cuda_max_allocated_bytes"] is None if info["device"] == "cpu" else _is_number(
            info["cuda_max_allocated_bytes"])
        assert b["group"].startswith(f"{info['model']}/{info['size']} b{info['batch_size']} {info['device']}")
        assert _is_number(b["stats"]["median"]) and b["stats"]["rounds"] >= 5
        # the verdict on pytest-benchmark's own rounds: contention seen meanwhile, and their precision
        assert info["time_trusted"] in (True, False) and _is_number(info["cpu_other_share"])
        assert (info["time_distrust"] is None) == info["time_trusted"]
    modes = {b["extra_info"]["mode"]: b["extra_info"] for b in benchmarks if b["extra_info"]["step"] == "forward"}
    assert modes["train"]["dropout_active"] == 1 and modes["eval_no_grad"]["dropout_active"] == 0
    assert modes["train"]["saved_bytes"] > 0 and modes["eval_no_grad"]["saved_bytes"] == 0
    # extra_info is the pipeline's record less its timing; read back, it is a record of the one schema
    untimed = {k for k, meta in SCHEMA.items() if meta["group"] != "time"}
    assert all(set(b["extra_info"]) == untimed for b in benchmarks)
    records = read_pytest_benchmark(str(out), data)
    _same_fields_as_gradbench_run(records)
    # the same pipeline measured them: exact memory equals gradbench's own record of the case
    for mode in ("train", "eval_no_grad"):
        ours = _run_case_record(mode)
        theirs = next(r for r in records if r["mode"] == mode and r["step"] == "forward")
        for key in ("peak_bytes", "held_bytes", "saved_bytes", "dropout_active", "stochastic_ops", "flops"):
            assert theirs[key] == ours[key], (mode, key, theirs[key], ours[key])


def _git_head():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def test_asv_check_and_quick_run_save_results(tmp_path):
    head = _git_head()
    if head is None:
        pytest.skip("asv run needs a git checkout")
    env = {**os.environ, "HOME": str(tmp_path), "GRADBENCH_GRID": "smoke"}
    config = json.load(open(os.path.join(ROOT, "asv.conf.json")))
    config.update(repo=ROOT, benchmark_dir=os.path.join(ROOT, "benchmarks"), results_dir=str(tmp_path / "results"),
                  html_dir=str(tmp_path / "html"),
                  env_dir=str(tmp_path / "env"))
    conf = tmp_path / "asv.conf.json"
    conf.write_text(json.dumps(config))
    asv = [sys.executable, "-m", "asv"]

    def run(*args):
        r = subprocess.run([*asv, *args, "--config", str(conf)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    assert "No problems found" in run("check", "--python=same")
    machine = subprocess.run([sys.executable, "-m", "gradbench.cli", "asv-machine", "--machine", "ci-box"],
                             env=env, capture_output=True, text=True)
    assert machine.returncode == 0, machine.stderr
    run("run", "--python=same", "--quick", "--set-commit-hash", head, "--machine", "ci-box")
    machine_json = json.loads((tmp_path / "results" / "ci-box" / "machine.json").read_text())
    assert {"gpu", "driver", "cuda", "torch"} <= set(machine_json)
    [result_file] = [p for p in (tmp_path / "results" / "ci-box").iterdir() if p.name != "machine.json"]
    saved = json.loads(result_file.read_text())
    names = set(saved["results"])
    for name in ("time_forward", "time_train_step", "track_peak_bytes", "track_saved_bytes",
                 "track_cuda_max_memory_allocated"):
        assert any(n.endswith("." + name) for n in names), name
    peak = next(v for n, v in saved["results"].items() if n.endswith(".track_peak_bytes"))
    values = peak[0]  # one value per parameter combination, cpu ones first; cuda ones null here
    assert all(_is_number(v) and v > 0 for v in values[: len(GRIDS["smoke"].modes)])
    records = read_asv_results(str(tmp_path / "results"))
    _same_fields_as_gradbench_run(records)
    ours = _run_case_record("train")
    theirs = next(r for r in records if r["mode"] == "train" and r["step"] == "forward")
    for key in ("peak_bytes", "saved_bytes"):
        assert theirs[key] == ours[key], (key, theirs[key], ours[key])
    run("publish")
    assert (tmp_path / "html" / "index.html").exists()


def test_benchmark_case_skips_and_restores():
    with pytest.raises(NotApplicable, match="^mode 'frozen': it records no autograd graph, so there is no train step$"):
        BenchmarkCase("mlp", "tiny", 4, "cpu", "frozen", "train_step")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(NotApplicable, match="^no CUDA GPU on this machine$"):
            BenchmarkCase("mlp", "tiny", 4, "cuda", "eval")
    model = harness_workload("mlp", "tiny", 4, "cpu").model
    before = [p.clone() for p in model.parameters()]
    case = BenchmarkCase("mlp", "tiny", 4, "cpu", "train", "train_step")  # its passes ran train steps
    # the pipeline's own record of the case, as gradbench run measures it
    assert case.record["peak_bytes"] == gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train",
                                                           step="train_step", max_time_s=0.02)["peak_bytes"]
    assert case.record["dropout_active"] is True
    case.step()
    case.close()
    assert all((a == b).all() for a, b in zip(before, model.parameters()))
    assert model.training is True


def test_benchmark_case_is_warm_by_gradbenchs_own_rule(monkeypatch):
    """A harness's first timed call (asv --quick's only one) comes after the warm-up gradbench run does."""
    import gradbench.harness as harness
    from gradbench.measure.timing import WARMUP_S, warm_up
    from gradbench.pipeline import WARMUP_STEPS

    calls = []

    def spy(fn, clock, **kwargs):
        calls.append(kwargs)
        return warm_up(fn, clock, **kwargs)

    monkeypatch.setattr(harness, "warm_up", spy)
    case = BenchmarkCase("mlp", "tiny", 4, "cpu", "eval_no_grad")
    try:
        assert calls == [dict(warmup_steps=WARMUP_STEPS, max_time_s=2.0)]  # time_step's defaults otherwise
        assert case.warmup_s >= WARMUP_S and 0 < case.per_step_s < case.warmup_s
    finally:
        case.close()


def _asv_suite():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_modes_under_test", os.path.join(ROOT, "benchmarks",
                                                                                         "bench_modes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_asv_suite_reuses_its_prepared_case_and_closes_it_for_another(monkeypatch):
    """asv re-runs setup before every sample: the warm case is reused, and another case closes it first."""
    suite = _asv_suite()
    params = ("mlp", "tiny", 4, "cpu")
    forward = suite.Forward()
    forward.setup(*params, "eval")
    first = forward.case
    forward.setup(*params, "eval")
    assert forward.case is first and first.steps_per_block >= 1
    model = harness_workload(*params).model
    assert model.training is False  # eval applied, and still applied while the case is open
    closed, close = [], first.close
    monkeypatch.setattr(first, "close", lambda: (closed.append(True), close()))
    forward.setup(*params, "train")
    assert closed == [True] and forward.case is not first and model.training is True
    suite._close_open()


def test_asv_suite_times_a_block_and_counts_per_step(monkeypatch):
    suite = _asv_suite()
    forward = suite.Forward()
    forward.setup("mlp", "tiny", 4, "cpu", "eval_no_grad")
    try:
        steps, calls = 7, []  # not 1, whatever this machine's speed: a block of one would pass by itself
        monkeypatch.setattr(forward.case, "steps_per_block", steps)
        monkeypatch.setattr(forward.case, "_step", lambda: calls.append(1))
        forward.time_forward()
        assert len(calls) == steps  # one timed call is a block of steps, gradbench's sample
        monkeypatch.setattr(suite.time, "perf_counter", lambda: 12.0)
        assert forward.timer() == pytest.approx(12.0 / steps)  # and asv's clock counts per step
    finally:
        suite._close_open()


def test_asv_suite_warms_and_blocks_an_older_gradbench_case(monkeypatch):
    """asv runs today's suite against gradbench installed from older commits: 0.2.0-0.3.0's BenchmarkCase
    had only record, step() and close()."""
    suite = _asv_suite()
    steps, closed = [], []

    class OlderCase:
        def __init__(self, *key):
            self.record = {"peak_bytes": 1, "saved_bytes": 2}

        def step(self):
            steps.append(1)
            time.sleep(1e-4)

        def close(self):
            closed.append(True)

    monkeypatch.setattr(suite, "BenchmarkCase", OlderCase)
    forward = suite.Forward()
    began = time.perf_counter()
    forward.setup("mlp", "tiny", 4, "cpu", "eval")
    assert time.perf_counter() - began >= suite._OlderCase.WARMUP_S and len(steps) > 1  # warmed by time
    block = forward.case.steps_per_block
    assert 1 <= block <= 10  # >= 1 ms of steps that take at least 0.1 ms
    del steps[:]
    forward.time_forward()
    assert len(steps) == block
    memory = suite.ForwardMemory()
    memory.setup("mlp", "tiny", 4, "cpu", "train")
    assert closed == [True] and memory.track_peak_bytes() == 1
    suite._open.clear()


def test_run_case_and_gradbench_run_write_the_same_fields(tmp_path):
    _same_fields_as_gradbench_run([_run_case_record("eval"), _run_case_record("train", "train_step")])
    out = tmp_path / "run.jsonl"
    result = subprocess.run([sys.executable, "-m", "gradbench.cli", "run", "--models", "mlp", "--sizes", "tiny",
                             "--batch-sizes", "8", "--modes", "eval", "frozen", "--max-time", "0.02", "--no-report",
                             "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4  # two modes, two steps (frozen's train step: not_applicable)
    _same_fields_as_gradbench_run(lines)


def test_grid_from_env(monkeypatch):
    monkeypatch.delenv("GRADBENCH_ASV_GRID", raising=False)
    monkeypatch.setenv("GRADBENCH_GRID", "default")
    assert grid_from_env() == GRIDS["default"]  # eager: no compile or autocast asked for
    monkeypatch.setenv("GRADBENCH_GRID", "huge")
    with pytest.raises(ValueError, match="unknown GRADBENCH_GRID 'huge'; valid grids: smoke, quick, default, full"):
        grid_from_env()


def test_the_grids_old_variable_still_works_and_the_new_one_wins(monkeypatch):
    monkeypatch.delenv("GRADBENCH_GRID", raising=False)
    monkeypatch.setenv("GRADBENCH_ASV_GRID", "default")
    assert grid_from_env() == GRIDS["default"]
    monkeypatch.setenv("GRADBENCH_GRID", "smoke")
    assert grid_from_env() == GRIDS["smoke"]
    monkeypatch.setenv("GRADBENCH_ASV_GRID", "huge")  # not read while the new name is set
    assert grid_from_env() == GRIDS["smoke"]
    monkeypatch.delenv("GRADBENCH_GRID")
    with pytest.raises(ValueError, match="unknown GRADBENCH_ASV_GRID 'huge'"):  # named as it was given
        grid_from_env()
