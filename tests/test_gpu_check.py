"""tools/gpu-check: its dry run (every step's CPU counterpart) runs here, so the script cannot rot; and
its one-line refusals. On a GPU machine the same script runs the CUDA steps (docs: GPU kit)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu-check")
STEPS = ["env", "tests", "selfcheck", "sweep", "cpu", "peak-plain", "peak-cpu", "predict", "energy", "capacity",
         "compile", "gpus-all", "contended", "report"]


def gpu_check(*args, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_the_dry_run_runs_every_step_on_cpu_and_writes_its_summary(tmp_path):
    out = tmp_path / "check"
    done = gpu_check("--dry-run", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert list(status) == STEPS, done.stdout[-3000:]
    assert "fail" not in status.values(), {s["step"]: s["message"] for s in summary["steps"]}
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert summary["dry_run"] is True and "DRY RUN" in (out / "summary.md").read_text()
    assert status["predict"] == "dry"  # predictions against the dry sweep, on cpu: never a pass
    assert status["sweep"] == "dry" and status["peak-plain"] == "dry"  # a CPU stand-in never says pass
    for name in ("results.jsonl", "cpu.jsonl", "plain-peaks.jsonl", "predict.jsonl", "energy.jsonl", "capacity.jsonl",
                 "compile.jsonl", "contended.jsonl", os.path.join("report", "report.html")):
        assert (out / name).stat().st_size > 0, name
    records = [json.loads(line) for line in (out / "energy.jsonl").read_text().splitlines()]
    assert all(r["energy_j"] is None for r in records)  # no energy counter on cpu: null, never made up
    contended = [json.loads(line) for line in (out / "contended.jsonl").read_text().splitlines()]
    assert contended and all(r["time_trusted"] is False for r in contended if r["status"] == "ok")


def test_an_out_of_time_step_is_skipped_and_says_so(tmp_path):
    done = gpu_check("--dry-run", "--out", str(tmp_path), "--only", "env,predict", "--budget", "3")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["status"] for s in summary["steps"]] == ["skipped", "skipped"]
    assert all("out of time" in s["message"] for s in summary["steps"]) and done.returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--only", "sweep,bogus"], "unknown step 'bogus'; valid: env, tests"),
    (["--only", ","], "--only ',' names no step"),
    (["--budget", "0"], "bad --budget 0.0; it must be a finite number of seconds > 0"),
    (["--budget", "inf"], "bad --budget inf"),
    (["--budget", "text"], "invalid float value: 'text'"),
    (["--out", "README.md"], "--out 'README.md' is a file"),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path, args, message):
    done = gpu_check("--dry-run", "--out", str(tmp_path), *args)  # a later --out wins
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal where no GPU is present")
def test_without_a_gpu_it_refuses_and_names_the_dry_run(tmp_path):
    done = gpu_check("--out", str(tmp_path))
    assert done.returncode == 2 and "--dry-run" in done.stderr and len(done.stderr.strip().splitlines()) == 1
