"""End-to-end tests of `gradbench run`: real worker processes, tiny models, no timing assertions. The
command runs in this process (gradbench_here) unless the test is about the command's own process."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gradbench.record import case_key
from gradbench.schema import RECORD_FIELDS
from gradbench.results import read_jsonl
from gradbench.plan import Grid, group_by_workload, parse_shard, shard, shuffled

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FAST = ["--max-time", "0.05", "--no-report"]


def gradbench(*args, timeout=240, **kwargs):
    return subprocess.run([sys.executable, "-m", "gradbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def gradbench_here(capsys, *args):
    """`gradbench ARGS` in this process: its workers are still processes, but the command's own start
    (a torch import, seconds) is paid once for the test session."""
    from gradbench.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def records_of(path):
    return read_jsonl(path)[0]


def test_run_writes_one_valid_record_per_case(tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    result = gradbench_here(capsys, "run", "--models", "mlp,transformer", "--sizes", "tiny", "--batch-sizes", "4",
                            "--modes", "train", "eval_no_grad", "frozen", "--steps", "forward", "train_step",
                            "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    records = records_of(out)
    assert len(records) == 2 * 3 * 2
    assert len({case_key(r) for r in records}) == len(records)
    for r in records:
        assert set(RECORD_FIELDS) <= set(r)
        expected = "not_applicable" if r["step"] == "train_step" and r["mode"] != "train" else "ok"
        assert r["status"] == expected, r["error"]
    assert len({r["run_id"] for r in records}) == 1
    assert "median time vs train" in result.stdout and "peak memory vs train" in result.stdout
    assert "harness overhead" in result.stdout


def _line_count(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return 0


def test_sigkill_then_resume_runs_every_case_exactly_once(tmp_path, capsys):
    out = tmp_path / "killed.jsonl"
    args = ["run", "--models", "mlp", "cnn", "--sizes", "tiny", "--batch-sizes", "2", "4",
            "--modes", "train", "eval", "eval_no_grad", "--steps", "forward", "--out", str(out), *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "gradbench.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _line_count(out) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = _line_count(out)
    assert 3 <= written < 12, "the kill should land mid-sweep"
    result = gradbench_here(capsys, *args, "--resume")
    assert result.returncode == 0, result.stderr
    records = records_of(out)
    keys = [case_key(r) for r in records]
    assert len(keys) == len(set(keys)) == 12
    assert all(r["status"] == "ok" for r in records)


def test_resume_ignores_truncated_last_line_and_keeps_earlier_records(tmp_path, capsys):
    out = tmp_path / "partial.jsonl"
    args = ["run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "train",
            "--steps", "forward", "--out", str(out), *FAST]
    assert gradbench_here(capsys, *args).returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # killed while writing the second record
    result = gradbench_here(capsys, *args, "--resume")
    assert result.returncode == 0, result.stderr
    assert "truncated last line ignored" in result.stderr
    records = records_of(out)
    assert sorted(r["mode"] for r in records) == ["eval", "train"]
    assert records[0] == json.loads(lines[0])  # the earlier record is untouched


def test_crashing_and_hanging_models_are_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "bad.jsonl"
    models = [f"{FIXTURES}/user_models.py:aborts", f"{FIXTURES}/user_models.py:sleeps", "mlp"]
    result = gradbench_here(capsys, "run", "--models", *models, "--sizes", "tiny", "--batch-sizes", "2",
                            "--modes", "eval_no_grad", "--steps", "forward", "--timeout", "8",
                            "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    status = {r["model"].rsplit(":", 1)[-1]: r for r in records_of(out)}
    assert status["aborts"]["status"] == "crashed" and "died" in status["aborts"]["error"]
    assert status["sleeps"]["status"] == "timeout" and "--timeout 8" in status["sleeps"]["error"]
    assert status["mlp"]["status"] == "ok"


def test_isolate_case_records_rss(tmp_path, capsys):
    out = tmp_path / "iso.jsonl"
    result = gradbench_here(capsys, "run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes",
                            "eval", "train", "--steps", "forward", "--isolate", "case", "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    records = records_of(out)
    assert len(records) == 2 and all(r["rss_peak_bytes"] > 10_000_000 for r in records)


def test_shards_partition_the_grid():
    cases = Grid(models=("mlp", "cnn"), sizes=("tiny", "small"), batch_sizes=(1, 8, 64)).cases()
    for n in (1, 2, 3, 7):
        parts = [shard(cases, i, n) for i in range(1, n + 1)]
        flat = [c for p in parts for c in p]
        assert sorted(flat, key=repr) == sorted(cases, key=repr)
        assert len(flat) == len(set(flat))
    assert shard(cases, 2, 3) == shard(list(cases), 2, 3)  # deterministic


def test_shard_files_together_are_the_sweep(tmp_path, capsys):
    common = ["run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "4", "--modes", "eval",
              "eval_no_grad", "--steps", "forward", *FAST]
    keys = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.jsonl"
        assert gradbench_here(capsys, *common, "--shard", f"{i}/2", "--out", str(out)).returncode == 0
        keys += [case_key(r) for r in records_of(out)]
    full = {(m, "tiny", b, "cpu", "float32", "none", "none", None, None, mode, "forward") for m in ["mlp"]
            for b in (2, 4)
            for mode in ("eval", "eval_no_grad")}
    assert sorted(keys) == sorted(full)


def test_mode_order_is_shuffled_within_a_group_but_reproducible():
    group = group_by_workload(Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(8,),
                                   steps=("forward",)).cases())[0]
    assert shuffled(group, 0) == shuffled(group, 0)
    assert any(shuffled(group, s) != group for s in range(5))
    assert sorted(shuffled(group, 0), key=repr) == sorted(group, key=repr)


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "1", "1/0"):
        with pytest.raises(ValueError, match="bad shard"):
            parse_shard(bad)


ERRATIC = f"{os.path.join(FIXTURES, 'user_models.py')}:erratic"


def test_repeat_measures_each_case_in_k_processes_interleaved(tmp_path, capsys):
    out = tmp_path / "rep.jsonl"
    result = gradbench_here(capsys, "run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes",
                            "train", "eval_no_grad", "--steps", "forward", "--repeat", "3", "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    records = records_of(out)
    assert sorted((r["mode"], r["repeat"]) for r in records) == \
        sorted((m, k) for m in ("train", "eval_no_grad") for k in (1, 2, 3))
    assert [r["repeat"] for r in records] == [1, 1, 2, 2, 3, 3]  # process by process on the workload
    assert {r["attempt"] for r in records} == {1} and len({r["run_id"] for r in records}) == 1
    # resume: a fourth process is asked for, and only it runs
    again = gradbench_here(capsys, "run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes",
                           "train", "eval_no_grad", "--steps", "forward", "--repeat", "4", "--out", str(out),
                           "--resume", *FAST)
    assert again.returncode == 0, again.stderr
    assert "2 cases (2 x 4 worker processes) to run (6 already done)" in again.stderr
    assert sorted(r["repeat"] for r in records_of(out))[-2:] == [4, 4]


def test_untrusted_cases_are_measured_again_and_every_attempt_kept(tmp_path, capsys):
    out = tmp_path / "retry.jsonl"
    result = gradbench_here(capsys, "run", "--models", ERRATIC, "--sizes", "default", "--batch-sizes", "2",
                            "--modes", "eval", "eval_no_grad", "--steps", "forward", "--retry-untrusted", "2",
                            "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    records = records_of(out)
    # each mode measured three times, the retries after every first attempt: all kept in the file
    assert [r["attempt"] for r in records] == [1, 1, 2, 2, 3, 3]
    assert all(r["status"] == "ok" and r["time_trusted"] is False and "imprecise" in r["time_distrust"]
               for r in records)
    assert "2 of 2 ok timings are untrusted" in result.stdout


def test_compare_two_repeated_runs_of_the_same_code_resamples_processes(tmp_path, capsys):
    args = ["--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "train", "eval_no_grad",
            "--steps", "forward", "--repeat", "2", "--no-report", "--max-time", "0.2"]
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        result = gradbench_here(capsys, "run", *args, "--out", str(path))
        assert result.returncode == 0, result.stderr
    # no gate: on a busy machine every timing may be untrusted, and a gate that judged nothing fails
    result = gradbench_here(capsys, "compare", *map(str, paths), "--by", "file", "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 shared cases" in result.stdout
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp" / "compare_by_file.csv")
    # two processes a side, unless one's timing was untrusted (then that side keeps its trusted one)
    for _, row in table.iterrows():
        both = row["baseline_runs"] == 2 and row["other_runs"] == 2
        assert row["interval"] == ("between and within processes" if both else "within-process only"), row
    if ((table["baseline_runs"] == 2) & (table["other_runs"] == 2)).any():
        assert "between and within processes" in result.stdout and "2 / 2" in result.stdout
    # one process per side: the same comparison says its interval is within-process only
    single = tmp_path / "single.jsonl"
    single.write_text("".join(line for line in open(paths[0]) if '"repeat": 1' in line))
    result = gradbench_here(capsys, "compare", str(single), str(paths[1]), "--by", "file")
    assert "within-process only" in result.stdout


def test_resume_with_retries_measures_again_what_an_earlier_run_left_untrusted(tmp_path, capsys):
    out = tmp_path / "resume-retry.jsonl"
    args = ["run", "--models", ERRATIC, "--sizes", "default", "--batch-sizes", "2", "--modes", "eval",
            "--steps", "forward", "--out", str(out), *FAST]
    assert gradbench_here(capsys, *args).returncode == 0
    assert [r["attempt"] for r in records_of(out)] == [1]
    result = gradbench_here(capsys, *args, "--resume", "--retry-untrusted", "1")
    assert result.returncode == 0, result.stderr
    assert [r["attempt"] for r in records_of(out)] == [1, 2]
    assert "stayed untrusted through 1 retries" in result.stdout
    # resumed again with the same retries: its 1 + 1 attempts are made, nothing runs, no attempt repeats
    again = gradbench_here(capsys, *args, "--resume", "--retry-untrusted", "1")
    assert again.returncode == 0, again.stderr
    assert [r["attempt"] for r in records_of(out)] == [1, 2]
    # with one more retry asked for: attempt 3, after the two made
    more = gradbench_here(capsys, *args, "--resume", "--retry-untrusted", "2")
    assert more.returncode == 0, more.stderr
    assert [r["attempt"] for r in records_of(out)] == [1, 2, 3]
