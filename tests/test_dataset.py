"""dataset.py's rule, directly: which record stands for a case, and which records are capacity probes."""
import pandas as pd
import pytest

from gradbench import dataset
from gradbench.frame import to_frame

CASE = dict(model="mlp", size="tiny", batch_size=8, device="cpu", dtype="float32", mode="eval", step="forward",
            source="gradbench", source_file="r.jsonl", git_commit="abc", run_id="run1")


def ok(time, trusted=True, **more):
    return dict(CASE, status="ok", error=None, time_median_s=time, time_trusted=trusted, **more)


def failed(status="error", **more):
    return dict(CASE, status=status, error="boom", time_median_s=None, time_trusted=None, **more)


def times(records):
    return [r["time_median_s"] for r in records]


def test_a_trusted_record_stands_before_a_newer_untrusted_one():
    older, newer = ok(1.0), ok(2.0, trusted=False)
    assert dataset.standing([older, newer]) == [older]
    assert dataset.standing([newer, older]) == [older]  # and a newer trusted one replaces an untrusted one
    both = to_frame([older, newer])
    assert dataset.combined(both)["time_median_s"].tolist() == [1.0]
    assert dataset.per_run(both, ["mode", "run_id"])["time_median_s"].tolist() == [1.0]


def test_among_equals_the_newest_stands():
    assert times(dataset.standing([ok(1.0), ok(2.0)])) == [2.0]
    assert times(dataset.standing([ok(1.0, False), ok(2.0, False)])) == [2.0]
    assert dataset.standing([failed("oom"), failed("timeout")])[0]["status"] == "timeout"


@pytest.mark.parametrize("status", ["error", "oom", "timeout", "crashed"])
def test_an_ok_record_stands_before_a_later_failure(status):
    """The current rule, kept: a failed retry or resume never hides a measurement, trusted or not."""
    for measured in (ok(1.0), ok(1.0, trusted=False)):
        assert dataset.standing([measured, failed(status)]) == [measured]
        assert dataset.standing([failed(status), measured]) == [measured]
        row = dataset.combined(to_frame([measured, failed(status)]))
        assert row["status"].tolist() == ["ok"]


def test_a_timing_stands_before_a_memory_pass_of_the_same_batch():
    memory = ok(None, trusted=None)
    timed = ok(3.0, trusted=False)
    assert dataset.rank(memory) == dataset.UNTIMED < dataset.rank(timed) == dataset.UNTRUSTED
    assert dataset.standing([timed, memory]) == [timed]


def test_repeats_and_harnesses_stand_apart():
    records = [ok(1.0, repeat=1), ok(2.0, repeat=2), ok(3.0, source="asv"), ok(4.0, source="pytest-benchmark")]
    assert times(dataset.standing(records)) == [1.0, 2.0, 3.0, 4.0]
    # attempts compete: a retry's record replaces the first attempt's, whatever its run
    assert times(dataset.standing([ok(1.0, False, attempt=1), ok(2.0, attempt=2, run_id="run2")])) == [2.0]


def test_the_report_combines_repeats_but_keeps_commits_apart():
    df = to_frame([ok(1.0, repeat=1), ok(3.0, repeat=2), ok(5.0, git_commit="def")])
    out = dataset.combined(df)
    assert sorted(out["time_median_s"]) == [2.0, 5.0]


def test_compare_keeps_runs_apart():
    df = to_frame([ok(1.0, run_id="a"), ok(2.0, run_id="b"), ok(3.0, run_id="b")])
    assert dataset.per_run(df, ["mode", "run_id"])["time_median_s"].tolist() == [1.0, 3.0]


def test_kind_from_the_field_else_from_the_source():
    assert dataset.kind_of(ok(1.0)) == "case"
    assert dataset.kind_of(ok(1.0, source="capacity")) == "capacity_probe"
    assert dataset.kind_of(ok(1.0, kind="capacity_probe")) == "capacity_probe"
    assert dataset.kind_of(ok(1.0, source="capacity", kind="case")) == "case"
    df = pd.DataFrame([ok(1.0), ok(2.0, source="capacity"), ok(3.0, kind="capacity_probe")])
    assert dataset.cases(df)["time_median_s"].tolist() == [1.0]
    assert dataset.capacity_probes(df)["time_median_s"].tolist() == [2.0, 3.0]


def test_one_rule_says_a_records_kind_in_a_list_and_in_a_frame():
    """dataset.py read a DataFrame's kinds by a rule of its own, beside kind_of's: one rule now, and the
    migration's (a record from before ``kind`` is what its source says)."""
    from gradbench.migrate import STEPS

    to_5 = STEPS[3]  # format 4 -> 5: the step that gives a record its kind
    records = [ok(1.0), ok(2.0, source="capacity"), ok(3.0, kind="capacity_probe"),
               ok(4.0, source="capacity", kind="case"), ok(5.0, source="capacity", kind=None),
               ok(6.0, kind="prediction"), ok(7.0, kind=float("nan"))]
    for pick in (dataset.cases, dataset.capacity_probes, dataset.reported):
        assert pick(pd.DataFrame(records))["time_median_s"].tolist() == times(pick(records)), pick.__name__
    assert times(dataset.cases(records)) == [1.0, 4.0, 7.0]
    for r in records:
        if r.get("kind") is None:
            assert to_5(r)["kind"] == dataset.kind_of(r)


@pytest.mark.parametrize("probe", [dict(source="capacity"), dict(kind="capacity_probe")])
def test_a_capacity_probe_never_stands_for_a_case(probe):
    case = ok(1.0, trusted=False)
    later = ok(0.5, memory_budget_bytes=2**20, capacity_batch_size=8, **probe)  # trusted, newer, same identity
    standing = dataset.standing([case, later])
    assert [dataset.kind_of(r) for r in standing] == ["case", "capacity_probe"]
    assert dataset.cases(standing) == [case]
    df = to_frame([case, later])
    assert dataset.combined(df)["time_median_s"].tolist() == [1.0]
    assert dataset.combined(to_frame([later]))["time_median_s"].tolist() == []


def test_a_capacity_probe_stands_per_search():
    probe = dict(source="capacity", memory_budget_bytes=2**20, capacity_batch_size=8)
    first, second = ok(1.0, run_id="s1", **probe), ok(None, trusted=None, run_id="s2", **probe)
    assert dataset.standing([first, second]) == [first, second]
    searches = dataset.capacity_searches(to_frame([first, second]))
    assert searches["run_id"].tolist() == ["s2"]  # the newest search, whatever the rank of its probes


def test_two_harnesses_records_of_one_case_are_not_combined_as_repeats():
    ours, theirs = ok(1.0), ok(3.0, source="pytest-benchmark")
    rows = dataset.combined(to_frame([ours, theirs]))
    assert sorted(rows["time_median_s"].tolist()) == [1.0, 3.0]


def test_an_imprecise_old_timing_is_judged_before_it_can_outrank_a_newer_one(tmp_path):
    """A record from before trust verdicts (time_trusted null) whose interval is wide is untrusted on reading;
    it was chosen first, as if trusted, and a newer untrusted record of the case vanished."""
    import json

    from gradbench.record import new_record
    from gradbench.results import read_gradbench_jsonl

    base = {k: v for k, v in CASE.items() if k not in ("source_file",)}
    old = new_record(**base, status="ok", time_median_s=1e-3, time_ci_low_s=0.2e-3, time_ci_high_s=1.8e-3)
    old["time_trusted"] = None
    newer = new_record(**base, status="ok", time_median_s=2e-3, time_trusted=False, time_distrust="contention")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(newer) + "\n")
    [standing], _ = read_gradbench_jsonl(path)
    assert standing["time_median_s"] == 2e-3
