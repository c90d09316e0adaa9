"""Faults a new user meets (issue 11): each gets one line, exit status 2, and nothing run or lost.

Each test here failed on gradbench 0.3's first cut (commit 324841f) in the way its comment says.
"""
import json
import os

import pytest

import gradbench
from gradbench.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
JSONL = os.path.join(FIXTURES, "results", "tiny.jsonl")
TINY = ["--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "--steps", "forward",
        "--no-report"]


def refused(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("gradbench: error: "), err
    return lines[0]


@pytest.mark.parametrize("body, message", [
    ('resume = "no"', "bad 'resume' in --config"),           # was: a truthy string, so it resumed
    ('no_report = "false"', "bad 'no_report' in --config"),  # was: skipped the report
    ('quick = 1', "bad 'quick' in --config"),
    ("threads = 1.9", "bad --threads 1.9; expected an integer"),  # was: 1
    ("seed = true", "bad --seed True; expected an integer"),      # was: 1
    ("run = 5", "expected a table of settings"),                  # was: a traceback
    ('out = ["a.jsonl"]', "bad 'out' in --config"),                # was: a traceback
    ('models = [["mlp"]]', "bad value for 'models'"),
])
def test_config_values_of_the_wrong_type_are_refused(capsys, tmp_path, body, message):
    config = tmp_path / "c.toml"
    config.write_text(body + "\n")
    out = tmp_path / "out.jsonl"
    assert message in refused(capsys, ["run", "--config", str(config), "--out", str(out)])
    assert not out.exists()


def test_a_config_file_that_is_not_utf8_is_refused(capsys, tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('models = ["m\xe9lp"]\n'.encode("latin-1"))  # was: UnicodeDecodeError traceback
    assert "malformed --config" in refused(capsys, ["run", "--config", str(config)])


@pytest.mark.parametrize("args, message", [
    (["--seed", str(2 ** 64)], "bad --seed 18446744073709551616; it must be <="),  # was: every case an error
    (["--seed", str(-(2 ** 63) - 1)], "it must be >="),
    (["--threads", "1000000"], "bad --threads 1000000; it must be <= 4096"),     # was: crashed workers
    (["--max-time", "inf"], "bad --max-time inf; expected a finite number"),      # was: a traceback
    (["--devices", "cpu:1"], "unknown device 'cpu:1'"),                           # was: accepted
])
def test_numbers_and_devices_out_of_range_are_refused(capsys, tmp_path, args, message):
    out = tmp_path / "out.jsonl"
    assert message in refused(capsys, ["run", *TINY, *args, "--out", str(out)])
    assert not out.exists()


def test_a_value_repeated_in_a_list_runs_once(tmp_path):
    from gradbench.cli import _settings, build_grid, build_parser

    args = build_parser().parse_args(["run", "--models", "mlp", "mlp,cnn", "--batch-sizes", "8", "08", "8"])
    grid = build_grid(_settings(args))  # was: the same cases twice
    assert grid.models == ("mlp", "cnn") and grid.batch_sizes == (8,)


def test_explain_with_no_models_is_refused(capsys):
    assert "--models is empty" in refused(capsys, ["explain", "--models", ""])  # was: the defaults, silently


def test_a_file_named_twice_is_read_once():
    once = gradbench.load([JSONL])
    twice = gradbench.load([JSONL, os.path.join(FIXTURES, "results", ".", "tiny.jsonl")])  # was: doubled
    assert len(twice) == len(once)


def test_compare_out_naming_a_file_is_refused(capsys, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(dict(json.loads(line), machine="box2")) + "\n" for line in open(JSONL)))
    existing = tmp_path / "table.csv"
    existing.write_text("keep me\n")
    line = refused(capsys, ["compare", JSONL, str(other), "--by", "machine", "--out", str(existing)])
    assert "is a file" in line and existing.read_text() == "keep me\n"  # was: NotADirectoryError traceback


def test_a_second_run_on_the_same_results_file_is_refused_naming_the_first(capsys, tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "shared.jsonl"
    erratic = f"{os.path.join(FIXTURES, 'user_models.py')}:erratic"
    args = ["run", "--models", erratic, "--sizes", "default", "--batch-sizes", "2", "--modes", "eval",
            "eval_no_grad", "--steps", "forward", "--max-time", "0.5", "--no-report", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "gradbench.cli", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        lock = str(out) + ".lock"
        while not (os.path.exists(lock) and open(lock).read().startswith("pid")) and time.time() < deadline:
            time.sleep(0.05)
        line = refused(capsys, [*args, "--resume"])  # was: both runs measured every case
        assert "being written by another gradbench run" in line and f"pid {first.pid}" in line
    finally:
        assert first.wait(timeout=120) == 0
    records = [json.loads(line) for line in open(out)]
    assert sorted(r["mode"] for r in records) == ["eval", "eval_no_grad"]  # each case once
    assert not os.path.exists(str(out) + ".lock")  # released when the run ended


@pytest.mark.parametrize("option, value, recorded", [("--seed", "1", "seed 0"), ("--threads", "1", "threads 2")])
def test_resume_with_other_settings_is_refused(capsys, tmp_path, option, value, recorded):
    out = tmp_path / "run.jsonl"
    first = dict(json.loads(next(line for line in open(JSONL) if '"status": "ok"' in line)), seed=0, threads=2)
    out.write_text(json.dumps(first) + "\n")
    before = out.read_bytes()
    base = ["run", *TINY, "--out", str(out), "--resume", "--seed", "0", "--threads", "2"]
    line = refused(capsys, [*base, option, value])  # was: "0 cases to run", two experiments mixed in one file
    assert f"with {option} {value}" in line and recorded in line
    assert out.read_bytes() == before
