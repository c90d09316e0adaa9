"""How `gradbench ab` makes its sides and plans its rounds, without measuring: where a side's worker runs and
what it imports, revisions and interpreters refused in one line, the random order of a round, and a trial's
record as the worker's record with the blocks' time."""
import os
import random
import subprocess
import sys

import pytest

from gradbench.ab import sides as s
from gradbench.ab.rounds import Limits, _after_round, draw_order, trial_record
from gradbench.case import Case
from gradbench.errors import BadInput
from gradbench.measure.contention import Contention


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text("def make(size):\n    pass\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    return tmp_path


def test_a_side_runs_the_revisions_copy_of_a_model_file(repo, tmp_path_factory, monkeypatch):
    checkout = str(tmp_path_factory.mktemp("checkout"))
    side = s.Side("base", sys.executable, "HEAD", "c" * 40, str(repo), checkout)
    monkeypatch.chdir(repo / "pkg")
    assert side.cwd == os.path.join(checkout, "pkg")  # where the user stands, in the checkout
    assert side.model("model.py:make") == f"{os.path.join(checkout, 'pkg', 'model.py')}:make"
    assert side.model(f"{repo}/pkg/model.py:make") == f"{os.path.join(checkout, 'pkg', 'model.py')}:make"
    assert side.model("pkg.model:make") == "pkg.model:make"  # a module: imported from the checkout (cwd)
    assert side.model("mlp") == "mlp"
    first = side.environment()["PYTHONPATH"].split(os.pathsep)[0]  # this gradbench, whatever the interpreter
    assert os.path.samefile(os.path.join(first, "gradbench", "__init__.py"), s.__file__.replace(
        os.path.join("ab", "sides.py"), "__init__.py"))
    own = s.Side("base", sys.executable, "HEAD", "c" * 40, str(repo), checkout, own_gradbench=True)
    assert own.environment()["PYTHONPATH"].split(os.pathsep)[0] == checkout


def test_the_repository_is_the_one_holding_the_model_files(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    top, own = s.repository_for(["pkg/model.py:make"], None)
    assert os.path.realpath(top) == os.path.realpath(repo) and not own
    top, own = s.repository_for(["mlp"], None)
    assert own and os.path.isfile(os.path.join(top, "gradbench", "__init__.py"))
    outside = tmp_path.parent / "outside_model.py"
    outside.write_text("")
    with pytest.raises(BadInput, match="is in no git repository"):
        s.repository_for([f"{outside}:make"], None)


def test_revisions_are_resolved_or_refused_in_one_line(repo):
    assert s.resolve(str(repo), "HEAD") == git(repo, "rev-parse", "HEAD")
    for bad in ("nope", "-x", ""):
        with pytest.raises(BadInput) as caught:
            s.resolve(str(repo), bad)
        assert "\n" not in str(caught.value)


def test_sides_need_a_difference_or_an_explicit_a_a(repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(BadInput, match="nothing differs"):
        s.prepare(None, None, None, None, ["pkg/model.py:make"], None)
    with pytest.raises(BadInput, match="name both revisions"):
        s.prepare("HEAD", None, None, None, ["pkg/model.py:make"], None)
    base, candidate = s.prepare("HEAD", "HEAD", None, None, ["pkg/model.py:make"], None)
    assert base.commit == candidate.commit and (base.name, candidate.name) == ("base", "candidate")
    base, candidate = s.prepare(None, None, None, sys.executable, ["mlp"], None)
    assert base.revision is None and candidate.python == os.path.abspath(sys.executable)


def test_checkouts_are_made_once_per_commit_and_removed(repo):
    sides = s.prepare("HEAD", "HEAD", None, None, [f"{repo}/pkg/model.py:make"], str(repo))
    with s.Checkouts(sides) as checked_out:
        assert checked_out[0].checkout == checked_out[1].checkout
        assert os.path.isfile(os.path.join(checked_out[0].checkout, "pkg", "model.py"))
        folder = os.path.dirname(checked_out[0].checkout)
    assert not os.path.exists(folder)
    assert git(repo, "worktree", "list").count("\n") == 0


def test_a_round_measures_each_case_once_with_sides_in_random_order():
    plan = draw_order([0, 1, 2, 3], random.Random(1), alternations=3)
    assert sorted(i for i, _, _ in plan) == [0, 1, 2, 3]
    for _, opening, blocks in plan:
        assert sorted(opening) == ["base", "candidate"] and len(blocks) == 3
        assert all(sorted(pair) == ["base", "candidate"] for pair in blocks)
    firsts = {pair[0] for _, _, blocks in draw_order(list(range(40)), random.Random(2), 1) for pair in blocks}
    assert firsts == {"base", "candidate"}


def test_a_trial_record_is_the_workers_record_timed_by_its_blocks():
    from gradbench.pipeline import base_record
    from gradbench.record import Record

    case = Case(model="mlp", size="tiny", batch_size=2)
    raw = Record(base_record(case), status="ok", peak_bytes=1024, time_median_s=9.0).to_json()
    raw["field_of_a_newer_gradbench"] = 1
    side = s.Side("candidate", sys.executable, "HEAD", "a" * 40, "/r")
    blocks = [{"median": 0.002, "samples": 3, "measured_s": 0.01}, {"median": 0.004, "samples": 3, "measured_s": 0.01}]
    record = trial_record(raw, case, side, dict(ab_id="x", ab_round=3, ab_position=5), blocks,
                          Contention(cpu_other_share=0.5, cpu_steal_share=0.0))
    assert record["kind"] == "ab_trial" and record["ab_side"] == "candidate" and record["ab_commit"] == "a" * 40
    assert record["samples_s"] == [0.002, 0.004] and record["time_median_s"] == pytest.approx(0.003)
    assert record["peak_bytes"] == 1024 and record["time_trusted"] is False
    assert "other processes used 50%" in record["time_distrust"]
    assert "field_of_a_newer_gradbench" not in record.to_json()


def test_a_settled_case_is_retired_from_later_rounds_and_an_open_one_goes_on():
    """From the sixth round (the fewest with an interval) a case whose verdict is settled is measured no more;
    a case a side failed in is retired at once."""
    cases = [Case(model="mlp", size="tiny", batch_size=b).validate() for b in (2, 4)]
    spread = [1.0, 1.3, 0.8, 1.25, 0.85, 1.2, 0.9]  # candidate / base per round: the second case stays open

    def trials(rounds):
        out = []
        for rnd in range(1, rounds + 1):
            for case, ratio in zip(cases, (1.0, spread[rnd - 1])):
                for side, t in (("base", 0.01), ("candidate", 0.01 * ratio)):
                    out.append(dict(case.identity(), ab_side=side, ab_round=rnd, status="ok", error=None,
                                    samples_s=[t] * 3, time_median_s=t, cpu_other_share=0.0, cpu_steal_share=0.0,
                                    peak_bytes=1000, held_bytes=500, saved_bytes=200))
        return out

    limits = Limits(threshold=0.05, memory_threshold=0.0, max_rounds=20, max_time_s=None, timeout_s=60.0,
                    threads=1, alternations=1, block_s=0.02)
    said = []
    active, stopped = _after_round(5, 0.0, 0.0, trials(5), cases, [0, 1], limits, said.append)
    assert active == [0, 1] and stopped is None  # too few pairs for any verdict yet
    active, stopped = _after_round(6, 0.0, 0.0, trials(6), cases, [0, 1], limits, said.append)
    assert active == [1] and stopped is None and "1 retired with a verdict; 1 of 2 cases still open" in said[-1]
    active, stopped = _after_round(7, 0.0, 0.0, trials(7), cases, [1], limits, said.append)
    assert active == [1] and stopped is None and said[-1].startswith("round 7: 1 case on both sides")
    # the candidate crashes in round 3: that case is retired at once (more rounds would crash again)
    crashed = [dict(t, status="crashed", error="died", samples_s=None, time_median_s=None)
               if t["ab_round"] == 3 and t["ab_side"] == "candidate" and t["batch_size"] == 4 else t for t in trials(3)]
    active, stopped = _after_round(3, 0.0, 0.0, crashed, cases, [0, 1], limits, said.append)
    assert active == [0] and stopped is None and "1 retired with a verdict" in said[-1]
    active, stopped = _after_round(6, 0.0, 0.0, crashed + trials(6)[12:], cases, [0], limits, said.append)
    assert active == [] and stopped == "every case has its verdict"


def test_a_comparison_is_of_the_models_repository_only(repo, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(BadInput, match="built-in model 'mlp' is gradbench's code"):
        s.prepare("HEAD", "HEAD", None, None, ["mlp", "pkg/model.py:make"], None)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    git(elsewhere, "init", "-q")
    git(elsewhere, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x")
    with pytest.raises(BadInput, match="is not in repository"):
        s.prepare("HEAD", "HEAD", None, None, ["pkg/model.py:make"], str(elsewhere))


def test_a_model_file_must_be_in_one_revision_at_least(repo, monkeypatch):
    monkeypatch.chdir(repo)
    (repo / "pkg" / "new.py").write_text("def make(size):\n    pass\n")
    with pytest.raises(BadInput, match="is in neither revision"):
        s.prepare("HEAD", "HEAD", None, None, ["pkg/new.py:make"], None)
    assert s.uncommitted(s.prepare("HEAD", "HEAD", None, None, ["pkg/model.py:make"], None), ["pkg/new.py:make"]) == [
        "pkg/new.py"]
    git(repo, "add", "pkg/new.py")
    git(repo, "commit", "-qm", "two")
    base, candidate = s.prepare("HEAD~1", "HEAD", None, None, ["pkg/new.py:make"], None)  # added by the candidate
    assert base.commit != candidate.commit


def test_both_sides_run_with_glibc_mallocs_thresholds_pinned_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    for name in s.SIDES:
        env = s.Side(name=name, python=sys.executable).environment()
        assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
        assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"  # the user's own setting is kept
