"""The typed record: one declaration is the schema; nothing writes an undeclared field; JSON holds no
NaN; the README's field table is generated from the declaration; old files keep unknown fields."""
import json
import os

import pytest

import gradbench
from gradbench.record import RECORD_FIELDS, SCHEMA, new_record, schema_markdown, type_errors
from gradbench.results import read_jsonl
from gradbench.storage import JsonlWriter

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


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


def test_readme_field_table_is_the_declaration():
    text = open(README, encoding="utf-8").read()
    start, end = "<!-- record-schema:start -->", "<!-- record-schema:end -->"
    assert start in text and end in text, "README lacks the generated field table"
    table = text[text.index(start) + len(start):text.index(end)].strip()
    assert table == schema_markdown(), "README's field table is stale: paste gradbench.record.schema_markdown()"


def test_old_files_keep_unknown_fields_and_gain_the_new_ones(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"model": "mlp", "size": "tiny", "batch_size": 8, "device": "cpu",
                                "dtype": "float32", "mode": "eval", "step": "forward", "status": "ok",
                                "peak_bytes": 10, "asv_peakmem_delta_bytes": 5}) + "\n")
    df = gradbench.load(str(path))
    assert set(RECORD_FIELDS) <= set(df.columns) and df["asv_peakmem_delta_bytes"].tolist() == [5]
    assert df["held_bytes"].isna().all() and df["source"].tolist() == ["gradbench"]
    assert read_jsonl(path)[0][0]["asv_peakmem_delta_bytes"] == 5
