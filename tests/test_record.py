"""The typed record: one declaration is the schema; nothing writes an undeclared field; JSON holds no
NaN; old files keep unknown fields. (The docs' field table is generated from the declaration: test_docs.py.)"""
import json
import os

import pytest

import gradbench
from gradbench.record import new_record, type_errors
from gradbench.schema import RECORD_FIELDS, SCHEMA
from gradbench.results import read_jsonl
from gradbench.storage import JsonlWriter

def test_every_field_has_a_kind_a_unit_and_a_sentence():
    assert len(RECORD_FIELDS) == len(set(RECORD_FIELDS))
    for name, meta in SCHEMA.items():
        assert meta["kind"] in ("str", "int", "float", "bool", "list[float]", "list[str]"), name
        assert meta["doc"] and meta["group"], name
        if name.endswith("_bytes"):
            assert meta["unit"] == "bytes", name
        if name.endswith("_s") and not name.endswith("_per_s"):
            assert meta["unit"] == "s", name


def test_undeclared_fields_and_wrong_kinds_are_refused():
    with pytest.raises(TypeError):
        new_record(model="mlp", tracked_peak=1)
    assert type_errors({"model": "mlp", "bogus": 1}) == ["undeclared field 'bogus'"]
    assert type_errors({"peak_bytes": 1.5, "dropout_active": 1, "samples_s": [0.1, "x"]}) == [
        "samples_s=[0.1, 'x'] is not list[float]", "peak_bytes=1.5 is not int", "dropout_active=1 is not bool"]
    assert type_errors(new_record(model="mlp", peak_bytes=3, samples_s=[1.0, 2], stochastic_ops=[])) == []


def test_writer_refuses_an_undeclared_field_and_writes_null_for_nan(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as writer:
        with pytest.raises(TypeError, match="undeclared field 'extra'"):
            writer.write({**new_record(model="mlp", mode="eval", step="forward", status="ok"), "extra": 1})
        writer.write(new_record(model="mlp", mode="eval", step="forward", status="ok",
                                max_abs_diff_vs_eval_no_grad=float("nan"), samples_s=[1.0, float("inf")]))
    [line] = path.read_text().splitlines()
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert record["max_abs_diff_vs_eval_no_grad"] is None and record["samples_s"] == [1.0, None]
    assert set(record) == set(RECORD_FIELDS)


def test_old_files_keep_unknown_fields_and_gain_the_new_ones(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"model": "mlp", "size": "tiny", "batch_size": 8, "device": "cpu",
                                "dtype": "float32", "mode": "eval", "step": "forward", "status": "ok",
                                "peak_bytes": 10, "asv_peakmem_delta_bytes": 5}) + "\n")
    df = gradbench.load(str(path))
    assert set(RECORD_FIELDS) <= set(df.columns) and df["asv_peakmem_delta_bytes"].tolist() == [5]
    assert df["held_bytes"].isna().all() and df["source"].tolist() == ["gradbench"]
    assert read_jsonl(path)[0][0]["asv_peakmem_delta_bytes"] == 5


# ---------------------------------------------------------------- the frozen record (issue 25)

from gradbench.record import InvalidRecord, Record  # noqa: E402
from gradbench.schema import FORMAT_VERSION, PART_FIELDS, PARTS  # noqa: E402

CASE = dict(model="mlp", size="tiny", batch_size=8, device="cpu", dtype="float32", mode="eval", step="forward")


def _record(**values) -> Record:
    return Record(new_record(**CASE, status="ok", time_median_s=1e-3, samples_s=[1e-3, 2e-3], **values))


def test_a_record_refuses_every_change_in_place():
    record = _record()
    with pytest.raises(AttributeError, match="frozen"):
        record.status = "error"
    with pytest.raises(TypeError, match="frozen"):
        record["status"] = "error"
    with pytest.raises(TypeError, match="frozen"):
        del record["status"]
    for part in (record.case, record.measured, record.environment, record.unknown):
        with pytest.raises(TypeError):
            part["model"] = "cnn"
    assert not any(hasattr(record, name) for name in ("update", "pop", "setdefault", "clear"))
    record["samples_s"].append(1.0)  # a fresh list: the record's own is a tuple
    record.measured["samples_s"].append(1.0)
    assert record["status"] == "ok" and record["samples_s"] == [1e-3, 2e-3] == record.get("samples_s")


def test_the_three_parts_hold_exactly_their_groups_fields():
    groups = [g for part in PARTS.values() for g in part]
    assert len(groups) == len(set(groups))  # a group is in one part
    assert set(groups) | {"record"} == {meta["group"] for meta in SCHEMA.values()}  # and every group in one
    record = _record(run_id="r1", flops=10)
    for part, groups_of_part in PARTS.items():
        expected = [name for name, meta in SCHEMA.items() if meta["group"] in groups_of_part]
        assert list(getattr(record, part)) == expected == list(PART_FIELDS[part]), part
    assert record.case["model"] == "mlp" and record.measured["flops"] == 10 and record.environment["run_id"] == "r1"
    assert (record.format_version, record.kind) == (FORMAT_VERSION, "case")
    assert {"format_version", "kind", *(n for names in PART_FIELDS.values() for n in names)} == set(RECORD_FIELDS)


def test_replace_makes_a_new_record_checked_again():
    record = _record()
    changed = record.replace(status="error", error="boom", time_median_s=float("nan"))
    assert (changed["status"], changed["error"], changed["time_median_s"]) == ("error", "boom", None)
    assert record["status"] == "ok" and record["time_median_s"] == 1e-3  # the original stands
    with pytest.raises(InvalidRecord, match="kind='bogus' is not one of"):
        record.replace(kind="bogus")
    with pytest.raises(TypeError, match="peak_bytes=1.5 is not int"):
        record.replace(peak_bytes=1.5)
    with pytest.raises(TypeError, match="undeclared field 'bogus'"):
        record.replace(bogus=1)
    with pytest.raises(TypeError, match="kind is null"):
        record.replace(kind=None)
    with pytest.raises(TypeError, match="format_version=4 is not"):
        record.replace(format_version=4)  # a record in memory is of the current format


def test_a_record_reads_as_the_flat_mapping_its_line_is():
    record = _record(flops=10)
    assert record["flops"] == 10 and record.get("peak_bytes") is None and record.get("nothing", 1) == 1
    assert list(record) == list(RECORD_FIELDS) and dict(record) == {**record} and len(record) == len(RECORD_FIELDS)
    assert record == record.to_json() and record.to_json()["samples_s"] == [1e-3, 2e-3]
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(record)) == record == copy.deepcopy(record)


def test_to_json_round_trips_through_the_writer_and_the_reader(tmp_path):
    from gradbench.results import read_any

    record = _record(flops=10, stochastic_ops=["aten::rand"], time_trusted=True, source="gradbench")
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(record)
    [line] = path.read_text().splitlines()
    assert json.loads(line) == record.to_json()
    [again] = read_jsonl(path)[0]
    assert isinstance(again, Record) and again == record and again.to_json() == record.to_json()
    [from_any] = read_any(str(path))[0]
    assert from_any == record.replace(source_file=str(path))


def test_an_undeclared_field_is_refused_when_written_and_kept_read_only_when_read(tmp_path):
    with pytest.raises(InvalidRecord, match="undeclared field 'extra'"):
        Record({**new_record(**CASE), "extra": 1})
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({**CASE, "status": "ok", "peak_bytes": 10, "asv_peakmem_delta_bytes": 5,
                                "old_list": [1, 2]}) + "\n")
    [record] = read_jsonl(path)[0]
    assert dict(record.unknown) == {"asv_peakmem_delta_bytes": 5, "old_list": (1, 2)}
    assert record["asv_peakmem_delta_bytes"] == 5 and record.to_json()["old_list"] == [1, 2]
    with pytest.raises(TypeError):
        record.unknown["asv_peakmem_delta_bytes"] = 6
    with pytest.raises(TypeError, match="undeclared field"):
        record.replace(asv_peakmem_delta_bytes=6)
    with JsonlWriter(tmp_path / "again.jsonl") as writer:  # never written again
        with pytest.raises(TypeError, match="undeclared field 'asv_peakmem_delta_bytes'"):
            writer.write(record)
    assert (tmp_path / "again.jsonl").read_text() == ""


def test_every_reader_gives_records():
    from gradbench.results import read_any

    fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "results")
    for path in (os.path.join(fixtures, "asv"), os.path.join(fixtures, "pytest-benchmark.json"),
                 os.path.join(fixtures, "tiny.jsonl")):
        records = read_any(path)[0]
        assert records and all(isinstance(r, Record) and r["source_file"] == path for r in records), path


def test_a_non_finite_format_version_is_a_bad_value_not_a_missing_one(tmp_path):
    """JSON's 1e999 parses to infinity, which the readers read as null: a format_version of null would be
    inferred from the fields (as if the file were from before format_version), so the record was read."""
    path = tmp_path / "inf.jsonl"
    good = json.dumps(_record().to_json())
    path.write_text("\n".join([good, good.replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 1e999'),
                               good.replace(f'"format_version": {FORMAT_VERSION}', '"format_version": NaN'),
                               good.replace(f'"format_version": {FORMAT_VERSION}', '"format_version": null')]) + "\n")
    records, [warning] = read_jsonl(path)
    assert len(records) == 2  # the first, and the null one (a format inferred, as before)
    assert warning.startswith("inf.jsonl:2: 2 record(s) with wrong-typed fields skipped (and lines 3)")
    assert "format_version=inf is not a format" in warning


def test_the_warning_for_records_too_new_says_how_many_lines_and_which(tmp_path):
    path = tmp_path / "newer.jsonl"
    newer = json.dumps({**_record().to_json(), "format_version": FORMAT_VERSION + 1})
    path.write_text("\n".join([json.dumps(_record().to_json()), newer, newer, json.dumps(_record().to_json()),
                               newer]) + "\n")
    records, [warning] = read_jsonl(path)
    assert len(records) == 2
    assert warning.startswith(f"newer.jsonl:2: 3 record(s) of format_version up to {FORMAT_VERSION + 1} skipped "
                              "(and lines 3, 5): this gradbench reads formats up to")


def test_the_writer_freezes_a_draft_and_returns_the_record_it_wrote(tmp_path):
    draft = new_record(**CASE, status="ok", samples_s=[1e-3, float("nan")])
    with JsonlWriter(tmp_path / "r.jsonl") as writer:
        written = writer.write(draft)
        assert writer.write(written) == written  # a Record is written as it is
    assert isinstance(written, Record) and written["samples_s"] == [1e-3, None]
    assert draft["samples_s"][1] != draft["samples_s"][1]  # the draft itself is left as it was (NaN)
    assert [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [written.to_json()] * 2


def test_a_case_s_text_names_its_input_axis_compactly():
    from gradbench.record import case_label

    base = {"model": "bert", "size": "base", "batch_size": 8, "device": "cpu", "dtype": "float32", "mode": "eval",
            "step": "forward"}
    assert case_label({**base, "seq_len": 128}) == "bert/base b8 s128 cpu float32 eval forward"
    assert case_label({**base, "model": "resnet", "size": "50", "image_size": 224}, omit=("mode", "step")) == \
        "resnet/50 b8 224px cpu float32"
    # null, a frame's NaN (a float column), and the report's 0 key all say: no such input
    for none in (None, float("nan"), 0):
        assert case_label({**base, "model": "mlp", "seq_len": none, "image_size": none}) == \
            "mlp/base b8 cpu float32 eval forward"
    assert case_label({**base, "seq_len": 128.0, "batch_size": 8.0}) == "bert/base b8 s128 cpu float32 eval forward"
