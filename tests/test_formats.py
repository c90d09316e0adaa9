"""Every record format gradbench ever wrote still reads, migrated to the current one.

tests/golden/gradbench-V.jsonl are verbatim lines of files gradbench V wrote: 0.1, 0.2 and 0.3 from
results/sample/cpu-default.jsonl at 1b5ea9a, 0d50ac3 and 16de648 (mlp and transformer tiny at batch 8
in train and eval_no_grad, and one error at batch 1); 0.4 from `gradbench run` and `gradbench capacity`
at ee1d224, the last commit before format_version. Never edit them: they are what users' files hold.
"""
import json
import os

import pytest

from gradbench import migrate
from gradbench.cli import main
from gradbench.migrate import STEPS, inferred_version, migrated
from gradbench.record import new_record
from gradbench.schema import FORMAT_VERSION, KINDS
from gradbench.reading import ResultsFileError
from gradbench.results import read_any, read_jsonl
from gradbench.storage import JsonlWriter

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
# release -> the format its files are inferred to be
RELEASES = {"0.1": 1, "0.2": 2, "0.3": 3, "0.4": 4}


def golden(release: str) -> str:
    return os.path.join(GOLDEN, f"gradbench-{release}.jsonl")


def lines_of(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_reads_whole_in_the_current_format(release):
    raw = lines_of(golden(release))
    assert {inferred_version(r) for r in raw} == {RELEASES[release]}
    records, warnings = read_jsonl(golden(release))
    assert warnings == [] and len(records) == len(raw)  # no record skipped
    for before, after in zip(raw, records):
        assert after["format_version"] == FORMAT_VERSION and after["kind"] in KINDS
        assert after["kind"] == ("capacity_probe" if before.get("source") == "capacity" else "case")
        filled = {"source": before.get("source") or "gradbench", "compile": before.get("compile") or "none",
                  "autocast": before.get("autocast") or "none"}
        assert {k: after[k] for k in filled} == filled
        written = after.to_json()  # as JSON holds it: a Record's lists are tuples
        assert {k: written[k] for k in before if k not in filled} == {k: v for k, v in before.items()
                                                                      if k not in filled}  # nothing else changed
    assert all(r["format_version"] == FORMAT_VERSION for r in read_any(golden(release))[0])


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_makes_a_report(release, tmp_path):
    assert main(["report", golden(release), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").exists()


@pytest.mark.parametrize("old", ["0.1", "0.3"])
def test_an_old_release_compares_with_the_last(old, tmp_path, capsys):
    status = main(["compare", golden(old), golden("0.4"), "--by", "file", "--out", str(tmp_path / "cmp")])
    out, err = capsys.readouterr()
    assert status in (0, 1), err
    assert "Traceback" not in out + err and "mlp/tiny b8" in out  # cases shared across formats met


def test_a_v1_record_passes_through_every_step_in_order(monkeypatch):
    assert [f.__name__ for f in STEPS] == [f"_from_{n}" for n in range(1, FORMAT_VERSION)]
    assert len(set(STEPS)) == len(STEPS)
    seen = []

    def watched(step):
        def run(record):
            out = step(record)
            seen.append((step.__name__, record.get("format_version"), out["format_version"]))
            return out
        return run

    monkeypatch.setattr(migrate, "STEPS", tuple(watched(s) for s in STEPS))
    v1 = lines_of(golden("0.1"))[0]
    assert "format_version" not in v1
    assert migrated(v1)["format_version"] == FORMAT_VERSION
    assert seen == [("_from_1", None, 2), ("_from_2", 2, 3), ("_from_3", 3, 4), ("_from_4", 4, 5), ("_from_5", 5, 6)]
    seen.clear()
    migrated({**v1, "format_version": 3})  # a declared version starts at its own step
    assert [name for name, *_ in seen] == ["_from_3", "_from_4", "_from_5"]
    seen.clear()
    assert migrated(new_record(model="mlp")) and seen == []  # the current format: no step


def test_each_step_fills_what_its_newer_format_means():
    assert STEPS[0]({"model": "mlp"})["source"] == "gradbench"
    assert STEPS[2]({"model": "mlp", "compile": None})["compile"] == "none"
    assert STEPS[3]({"source": "capacity"})["kind"] == "capacity_probe"
    assert STEPS[3]({"source": "asv"})["kind"] == "case"


def test_format_6_gives_the_old_toy_transformer_its_32_tokens_and_every_other_model_no_axis():
    old = {"format_version": 5, "kind": "case", "size": "tiny", "batch_size": 8}
    assert STEPS[4]({**old, "model": "transformer"}) == {**old, "model": "transformer", "seq_len": 32,
                                                          "image_size": None, "format_version": 6}
    for model in ("mlp", "cnn", "zoo:conv_net"):
        new = migrated({**old, "model": model})
        assert (new["seq_len"], new["image_size"], new["format_version"]) == (None, None, 6)
    assert migrated({"model": "transformer", "size": "tiny"})["seq_len"] == 32  # a 0.1 record, through every step
    assert migrated({**old, "model": "transformer", "seq_len": 64})["seq_len"] == 64  # a value a record has stands


def _record(**values) -> dict:
    return new_record(**{"model": "mlp", "size": "tiny", "batch_size": 8, "device": "cpu", "dtype": "float32",
                         "mode": "eval", "step": "forward", "status": "ok", "time_median_s": 1e-3, **values})


def test_a_newer_format_is_skipped_with_one_warning(tmp_path):
    path = tmp_path / "mixed.jsonl"
    newer = FORMAT_VERSION + 1
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        _record(), {**_record(mode="train"), "format_version": newer, "novel_field": 1},
        {**_record(mode="frozen"), "format_version": newer}]))
    records, [warning] = read_jsonl(path)
    assert [r["mode"] for r in records] == ["eval"]
    assert "mixed.jsonl" in warning and f"format_version up to {newer}" in warning
    assert f"reads formats up to {FORMAT_VERSION}" in warning and "2 record(s)" in warning
    only = tmp_path / "only.jsonl"
    only.write_text(json.dumps({**_record(), "format_version": newer}) + "\n")
    with pytest.raises(ResultsFileError, match=f"all 1 records.*format_version {newer} is newer"):
        read_jsonl(only)
    huge = tmp_path / "huge.jsonl"  # a crafted version of 4000 digits is named short, not printed whole
    huge.write_text(json.dumps(_record()) + "\n" + json.dumps({**_record(), "format_version": 10 ** 4000}) + "\n")
    [warning] = read_jsonl(huge)[1]
    assert "an integer of" in warning and len(warning) < 300


@pytest.mark.parametrize("bad", [{"kind": "bogus"}, {"kind": 3}, {"format_version": 0}, {"format_version": "5"}])
def test_a_kind_or_format_that_names_nothing_is_skipped(bad, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps({**_record(mode="train"), **bad}) + "\n")
    records, [warning] = read_jsonl(path)
    assert [r["mode"] for r in records] == ["eval"] and "bad.jsonl:2" in warning


def test_gradbench_writes_the_format_and_kind(tmp_path):
    record = _record()
    assert record["format_version"] == FORMAT_VERSION and record["kind"] == "case"
    with JsonlWriter(tmp_path / "r.jsonl") as writer:
        writer.write(record)
        with pytest.raises(TypeError, match="kind='bogus' is not one of"):
            writer.write({**record, "kind": "bogus"})
    [line] = lines_of(str(tmp_path / "r.jsonl"))
    assert line["format_version"] == FORMAT_VERSION and line["kind"] == "case"


def test_asv_and_pytest_benchmark_records_are_cases_in_the_current_format():
    fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "results")
    for path in (os.path.join(fixtures, "asv"), os.path.join(fixtures, "pytest-benchmark.json")):
        records = read_any(path)[0]
        assert records and {(r["format_version"], r["kind"]) for r in records} == {(FORMAT_VERSION, "case")}, path


@pytest.mark.parametrize("kind", ["", 0, []])
def test_a_falsy_kind_in_a_file_without_a_format_is_skipped_too(kind, tmp_path):
    """Migration fills a missing kind, never a wrong one (an empty kind was read as a case before 0.4's step)."""
    path = tmp_path / "old.jsonl"
    old = {k: v for k, v in _record(mode="train").items() if k != "format_version"}
    path.write_text(json.dumps(_record()) + "\n" + json.dumps({**old, "kind": kind}) + "\n")
    records, [warning] = read_jsonl(path)
    assert [r["mode"] for r in records] == ["eval"] and "old.jsonl:2" in warning


def test_a_prediction_is_never_counted_or_shown_as_a_case_and_has_its_own_section(tmp_path):
    from gradbench.cli import main

    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        _record(time_trusted=True), _record(mode="train", time_trusted=True),
        _record(batch_size=16, mode="train", kind="prediction", time_trusted=False, time_distrust="PREDICTED")]))
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "PREDICTED" not in text  # no timing of a prediction is judged or shown
    assert "2 records (2 ok)" in text and "1 prediction records are in sections of their own" in text
    predictions = text.split("## Predicted and measured memory")[1].split("\n## ")[0]
    assert "b16" in predictions and "b16" not in text.replace(predictions, "")


def test_a_newer_format_that_renamed_fields_is_named_as_newer(tmp_path):
    """A newer gradbench may rename what this one recognises a record by: the file is too new, not foreign."""
    path = tmp_path / "newer.jsonl"
    path.write_text(json.dumps({"format_version": FORMAT_VERSION + 1, "outcome": "ok", "model": "mlp"}) + "\n")
    with pytest.raises(ResultsFileError, match=f"format_version {FORMAT_VERSION + 1} is newer"):
        read_jsonl(path)


def test_one_file_with_two_machines_records_of_a_case_warns_that_one_stands(tmp_path):
    """`cat box.jsonl other.jsonl > all.jsonl`: the records of one case compete (the newest stands), so one
    machine's measurements vanish; the reader says so, and how to keep both (a file per machine)."""
    from gradbench.results import read_gradbench_jsonl
    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        _record(machine="box"), _record(machine="box", mode="train"),
        _record(machine="other"), _record(machine="other", mode="train")]))
    records, [warning] = read_gradbench_jsonl(path)
    assert [r["machine"] for r in records] == ["other", "other"]
    assert "all.jsonl" in warning and "2 case(s)" in warning and "box, other" in warning
    assert "a file of its own" in warning
    alone = tmp_path / "alone.jsonl"  # a retry on the same machine is no news
    alone.write_text("".join(json.dumps(r) + "\n" for r in [_record(machine="box"), _record(machine="box")]))
    assert read_gradbench_jsonl(alone)[1] == []
    retried = tmp_path / "retried.jsonl"  # a failure on one node, measured on another: nothing was lost
    retried.write_text("".join(json.dumps(r) + "\n" for r in [_record(machine="node1", status="crashed",
                                                                        time_median_s=None), _record(machine="node2")]))
    assert read_gradbench_jsonl(retried)[1] == []
