"""`gradbench ab` for real: a user model's repository with commits that add a saved activation or a
sleep, two revisions checked out and measured in rounds of forked processes. Time verdicts depend on
how busy the machine is (a pair timed while other tests run is left out), so they are asserted wherever
the comparison could judge; memory, records, worktrees, errors and the report are asserted always. The
verdict arithmetic itself is test_ab_verdict.py's, on scripted trials."""
import json
import os
import subprocess
import sys

import pytest

WIDTH, BATCH = 64, 4
MODEL = f'''
import time
import torch
from torch import nn

SLEEP = 0.0
SIN = False


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear({WIDTH}, {WIDTH})
        self.b = nn.Linear({WIDTH}, 3)

    def forward(self, x):
        if SLEEP:
            time.sleep(SLEEP)
        h = self.a(x)
        if SIN:
            h = torch.sin(h)  # saves its input for backward, and b saves its output: one activation more
        return self.b(h)


def make(size="tiny"):
    torch.manual_seed(0)
    return Net(), lambda b: torch.randn(b, {WIDTH})
'''
GRID = ["--models", "model.py:make", "--sizes", "tiny", "--batch-sizes", str(BATCH), "--modes", "train",
        "eval_no_grad", "--steps", "forward", "--max-rounds", "6"]


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """base, then `mem` (sin: one saved activation) and `slow` (a 20 ms sleep in forward) on top of it."""
    path = tmp_path_factory.mktemp("abrepo")
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "model.py").write_text(MODEL)
    git(path, "add", "model.py")
    git(path, "commit", "-qm", "base")
    git(path, "tag", "base")
    (path / "model.py").write_text(MODEL.replace("SIN = False", "SIN = True"))
    git(path, "commit", "-qam", "mem")
    git(path, "tag", "mem")
    git(path, "checkout", "-q", "base")
    (path / "model.py").write_text(MODEL.replace("SLEEP = 0.0", "SLEEP = 0.02"))
    git(path, "commit", "-qam", "slow")
    git(path, "tag", "slow")
    git(path, "checkout", "-q", "base")
    return path


def ab(repo, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "gradbench.cli", "ab", *args], cwd=repo, capture_output=True,
                          text=True, timeout=timeout)


def trials(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def table_rows(out: str) -> dict:
    """The verdict table's rows by mode, as printed."""
    return {mode: line for line in out.splitlines() for mode in ("train forward", "eval_no_grad forward")
            if line.startswith("model.py:make/tiny") and f"cpu float32 {mode} " in line}


def test_a_saved_activation_is_caught_to_the_byte_and_the_worktrees_are_gone(repo, tmp_path):
    out = tmp_path / "mem.jsonl"
    done = ab(repo, "base", "mem", *GRID, "--out", str(out), "--no-report")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert f"saved_bytes GREW +1.0 KiB (+{BATCH * WIDTH * 4:,} B)" in rows["train forward"]
    assert "saved_bytes" not in rows["eval_no_grad forward"]  # nothing saved without a graph, on either side
    assert "FAIL:" in done.stdout
    records = trials(out)
    assert {r["kind"] for r in records} == {"ab_trial"}
    assert {r["ab_commit"] for r in records} == {git(repo, "rev-parse", "base"), git(repo, "rev-parse", "mem")}
    assert {r["ab_round"] for r in records} == set(range(1, 7))
    assert len(records) == 6 * 2 * 2  # rounds x cases x sides
    for r in records:
        assert r["model"] == "model.py:make" and r["status"] == "ok" and len(r["samples_s"]) == 3  # --alternations (default)
        assert (r["dropout_active"] is not None) == (r["ab_round"] <= 2)  # every pass in the first two rounds
    saved = {(r["ab_side"], r["mode"]): r["saved_bytes"] for r in records if r["ab_round"] <= 2}
    assert saved[("candidate", "train")] - saved[("base", "train")] == BATCH * WIDTH * 4
    assert git(repo, "worktree", "list").count("\n") == 0  # only the repository's own work tree is left
    assert git(repo, "status", "--porcelain") == ""


def test_a_sleep_in_forward_is_slower_wherever_it_could_be_judged(repo, tmp_path):
    done = ab(repo, "base", "slow", *GRID, "--out", str(tmp_path / "slow.jsonl"), "--no-report")
    assert done.returncode == 1, done.stdout + done.stderr
    for mode, row in table_rows(done.stdout).items():
        if "too few trusted pairs" not in row:  # a busy machine left the pairs out: no verdict, never a wrong one
            assert "SLOWER" in row, row


def test_a_and_a_never_calls_a_case_slower(repo, tmp_path):
    out = tmp_path / "aa.jsonl"
    done = ab(repo, "HEAD", "HEAD", *GRID, "--out", str(out))
    rows = table_rows(done.stdout)
    assert len(rows) == 2 and not any("SLOWER" in row or "faster" in row for row in rows.values())
    assert all("same to the byte" in row for row in rows.values())
    assert done.returncode == 0 or "no case has 6 trusted pairs" in done.stdout
    report = (tmp_path / "aa-report" / "report.md").read_text()
    assert "## A/B comparisons" in report  # and the command's gate, whichever it was (a busy machine compares nothing)
    assert ("every case passes the gate" if done.returncode == 0 else "nothing compared: not a pass") in report
    assert any(name.startswith("ab-rounds-") and name.endswith(".png")
               for name in os.listdir(tmp_path / "aa-report" / "figures"))


def test_two_interpreters_without_revisions_name_their_torch(repo, tmp_path):
    out = tmp_path / "py.jsonl"
    done = ab(repo, "--base-python", sys.executable, "--candidate-python", sys.executable, "--models",
              "model.py:make", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval_no_grad", "--steps",
              "forward", "--max-rounds", "6", "--out", str(out), "--no-report")
    import torch

    assert f"base: the working tree, python {sys.executable}, torch {torch.__version__}" in done.stdout
    assert {(r["ab_revision"], r["ab_python"], r["torch"]) for r in trials(out)} == {
        (None, sys.executable, torch.__version__)}


@pytest.mark.parametrize("args, message", [
    (["nope", "HEAD"], "unknown revision 'nope'"),
    (["HEAD"], "name both revisions"),
    ([], "nothing differs between the sides"),
    (["--base-python", "/no/such/python"], "--base-python '/no/such/python' is no executable"),
    (["HEAD", "HEAD", "--repo", "/"], "--repo '/' is no folder in a git repository"),
    (["HEAD", "HEAD", "--alternations", "0"], "--alternations"),
])
def test_bad_input_is_one_line_and_exit_2(repo, args, message):
    done = ab(repo, *args, "--models", "model.py:make", "--no-report", timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_an_interpreter_without_torch_stops_the_comparison_in_one_line(repo, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = ab(repo, "--candidate-python", str(bare / "bin" / "python"), "--models", "model.py:make", "--out",
              str(tmp_path / "x.jsonl"), timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("gradbench: error: candidate") and "No module named 'torch'" in lines[0]
    assert "Traceback" not in done.stderr
