"""The report's predictions section: each prediction beside the measurement that stands for the same case,
the ratios and the worst per model, unpredictable cases with their reason; a file of predictions alone is a
report too."""
import json

import pytest

from gradbench.case import Case
from gradbench.pipeline import base_record
from gradbench.record import Record
from gradbench.report.document import write_report
from gradbench.report.predictions import paired, prediction_blocks, ratio, worst_by_model
from gradbench.results import load


def _record(case, run_id, kind, status="ok", held=1000, peak=4000, saved=2000, **fields):
    record = dict(base_record(case, run_id=run_id), kind=kind, status=status, held_bytes=held, peak_bytes=peak,
                  saved_bytes=saved, source="predict" if kind == "prediction" else "gradbench", **fields)
    if status != "ok":
        record.update(held_bytes=None, peak_bytes=None, saved_bytes=None)
    return Record(record)


def _write(path, records):
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    return str(path)


A = Case(model="mlp", size="tiny", batch_size=8, mode="train", step="train_step").validate()
B = Case(model="mlp", size="tiny", batch_size=8, mode="eval", step="forward").validate()
C = Case(model="cnn", size="tiny", batch_size=8, mode="train", step="forward").validate()
T = Case(model="transformer", size="tiny", batch_size=8, mode="eval", step="forward").validate()  # seq_len: a
# column of numbers and nulls, NaN in a frame, must not split a case in two
N = Case(model="mlp", size="tiny", batch_size=8, mode="eval_no_grad", step="train_step").validate()


@pytest.fixture
def results(tmp_path):
    return _write(tmp_path / "p.jsonl", [
        _record(A, "r1", "prediction", peak=9999),  # replaced by the newer prediction below
        _record(A, "r2", "prediction", peak=4000),
        _record(A, "r0", "case", peak=4100),  # an older measurement: the newer one stands
        _record(A, "r2", "case", peak=4000),
        _record(B, "r2", "prediction", peak=3150),
        _record(B, "r0", "case", peak=3000),  # another run's measurement of B: 1.05
        _record(B, "r3", "case", status="error", error="x"),  # a failed retry does not hide it
        _record(C, "r2", "prediction", status="unpredictable", error="a convolution on CPU: oneDNN's buffers"),
        _record(C, "r2", "case", peak=7000),  # measured in its place (--verify)
        _record(T, "r2", "prediction", peak=5000),
        _record(T, "r2", "case", peak=5000),
        _record(N, "r2", "prediction", status="not_applicable", error="no train step"),
    ])


def test_each_prediction_is_set_beside_the_measurement_that_stands_for_its_case(results):
    pairs = paired(load([results]))
    assert [(p["model"], p["mode"], p["status"], m and m["peak_bytes"]) for p, m in pairs] == \
        [("mlp", "train", "ok", 4000), ("mlp", "eval", "ok", 3000), ("cnn", "train", "unpredictable", 7000),
         ("transformer", "eval", "ok", 5000), ("mlp", "eval_no_grad", "not_applicable", None)]
    assert [p["peak_bytes"] for p, _ in pairs[:2]] == [4000, 3150]


def test_the_worst_ratio_per_model_and_how_many_are_within_two_percent(results):
    worst = worst_by_model(paired(load([results])))
    assert list(worst) == ["mlp/tiny", "transformer/tiny"] and worst["mlp/tiny"][0] == pytest.approx(1.05)
    assert "peak of mlp/tiny b8 cpu float32 eval forward" == worst["mlp/tiny"][1]
    blocks = prediction_blocks(load([results]))
    text = " ".join(str(b[1]) for b in blocks if b[0] in ("p", "note"))
    assert "4 cases predicted" in text and "3 of them also measured" in text and "2 of 3 within 2%" in text
    assert "1 case could not be followed" in text and "mlp/tiny 1.050" in text and "1 case whose mode" in text
    table = next(b[1] for b in blocks if b[0] == "table")
    assert len(table) == 4  # not_applicable left out
    cnn = table.loc["cnn/tiny b8 cpu float32 train forward"]
    assert "oneDNN" in cnn["not predicted, because"] and cnn["measured held / peak / saved"].startswith("1000 B / 6.8 KiB")
    assert table.loc["mlp/tiny b8 cpu float32 eval forward", "peak pred/meas"] == "1.050"
    assert table["within 2%"].tolist() == ["yes", "NO", "", "yes"]


def test_ratios_of_zero_and_missing_bytes():
    assert ratio(0, 0) == 1.0 and ratio(5, 0) is None and ratio(None, 3) is None and ratio(3, float("nan")) is None


def test_a_file_of_predictions_alone_is_a_report_with_its_section(tmp_path):
    path = _write(tmp_path / "only.jsonl", [_record(A, "r2", "prediction"), _record(B, "r2", "prediction")])
    paths = write_report(load([path]), str(tmp_path / "report"))
    text = open(paths["markdown"]).read()
    assert "2 prediction records from 1 source(s)" in text and "## Predicted and measured memory" in text
    assert "not measured" in text and "## Environment" in text


def test_a_run_with_predictions_counts_them_apart_from_its_cases(results, tmp_path):
    text = open(write_report(load([results]), str(tmp_path / "report"))["markdown"]).read()
    assert "4 records (4 ok)" in text and "5 prediction records are in sections of their own" in text
