"""The asv and pytest-benchmark harnesses, run for real on the quick grid (as CI does)."""
import json
import math
import os
import subprocess
import sys

import pytest

from gradbench.harness import GRIDS, NotApplicable, PreparedCase, grid_from_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ("dropout_active", "bn_batch_stats", "bn_stats_updated", "graph_recorded", "fastpath")
NUMBERS = ("peak_bytes", "saved_bytes", "batch_size", "params", "grads_computed")
IDENTITY = ("model", "size", "device", "dtype", "mode", "step")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_pytest_benchmark_suite_writes_extra_info(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--gradbench-grid", "quick", "--benchmark-json", str(out),
         "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine_info"]["torch"] and "gpu" in data["machine_info"]
    benchmarks = data["benchmarks"]
    grid = GRIDS["quick"]
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
    modes = {b["extra_info"]["mode"]: b["extra_info"] for b in benchmarks if b["extra_info"]["step"] == "forward"}
    assert modes["train"]["dropout_active"] == 1 and modes["eval_no_grad"]["dropout_active"] == 0
    assert modes["train"]["saved_bytes"] > 0 and modes["eval_no_grad"]["saved_bytes"] == 0


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
    env = {**os.environ, "HOME": str(tmp_path), "GRADBENCH_ASV_GRID": "quick"}
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
    for name in ("time_forward", "time_train_step", "track_peak_bytes", "track_saved_bytes", "peakmem_forward",
                 "peakmem_baseline", "track_cuda_max_memory_allocated"):
        assert any(n.endswith("." + name) for n in names), name
    peak = next(v for n, v in saved["results"].items() if n.endswith(".track_peak_bytes"))
    values = peak[0]  # one value per parameter combination, cpu ones first; cuda ones null here
    assert all(_is_number(v) and v > 0 for v in values[: len(GRIDS["quick"].modes)])
    run("publish")
    assert (tmp_path / "html" / "index.html").exists()


def test_prepared_case_skips_and_restores():
    with pytest.raises(NotApplicable):
        PreparedCase("mlp", "tiny", 4, "cpu", "frozen", "train_step")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(NotApplicable):
            PreparedCase("mlp", "tiny", 4, "cuda", "eval")
    case = PreparedCase("mlp", "tiny", 4, "cpu", "train", "train_step")
    model = case.workload.model
    before = [p.clone() for p in model.parameters()]
    case.step()
    case.close()
    assert all((a == b).all() for a, b in zip(before, model.parameters()))
    assert model.training is True


def test_grid_from_env(monkeypatch):
    monkeypatch.setenv("GRADBENCH_ASV_GRID", "default")
    assert grid_from_env() is GRIDS["default"]
    monkeypatch.setenv("GRADBENCH_ASV_GRID", "huge")
    with pytest.raises(ValueError, match="unknown GRADBENCH_ASV_GRID 'huge'; valid grids: quick, default, full"):
        grid_from_env()
