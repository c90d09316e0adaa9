"""The report's answer across workloads, its ratio digits, its empty sections and its golden files.

The golden files (tests/golden/report/) are report.md made from records.jsonl, and `gradbench compare`'s table of
records.jsonl against other-machine.jsonl. After a deliberate change to the report, regenerate them with
    GRADBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_answer.py
and read the diff before committing it: a golden file is only as right as the last person who read it.
"""
import json
import os
import re
import shutil
import statistics

import pytest

import gradbench
from gradbench.cli import main
from gradbench.importers.asv import python_version
from gradbench.report import figures
from gradbench.report.answer import answer
from gradbench.report.document import write_report
from gradbench.report.findings import findings
from gradbench.units import ratio_text

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "report")
RECORDS = os.path.join(GOLDEN, "records.jsonl")
OTHER = os.path.join(GOLDEN, "other-machine.jsonl")
ASV_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "results", "asv")
UPDATE = os.environ.get("GRADBENCH_UPDATE_GOLDEN") == "1"
DASH = "\u2013"


def _read(path=RECORDS) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def _write(tmp_path, records, name="records.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _expected_ratios(records, field, trusted_only=False) -> dict[str, tuple[list[float], int]]:
    """mode -> (its per-workload ratios to train, how many were left out as untrusted), from the records
    alone: workload = model/size/batch (one device, dtype and setting in these files)."""
    forward = [r for r in records if r["step"] == "forward" and r["status"] == "ok"]
    train = {(r["model"], r["size"], r["batch_size"]): r for r in forward if r["mode"] == "train"}
    out: dict[str, tuple[list[float], int]] = {}
    for r in forward:
        base = train.get((r["model"], r["size"], r["batch_size"]))
        if r["mode"] == "train" or base is None:
            continue
        ratios, left_out = out.setdefault(r["mode"], ([], 0))
        if trusted_only and (r["time_trusted"] is False or base["time_trusted"] is False):
            out[r["mode"]] = (ratios, left_out + 1)
            continue
        ratios.append(r[field] / base[field])
    return out


def _cell(values: list[float]) -> str:
    low, high = min(values), max(values)
    if ratio_text(low) == ratio_text(high):
        return ratio_text(low)
    return f"{ratio_text(statistics.median(values))} ({ratio_text(low, suffix='')}{DASH}{ratio_text(high)})"


def test_the_answer_is_the_median_and_range_of_the_per_workload_ratios():
    records = _read()
    table = answer(gradbench.load(RECORDS)).table
    memory = _expected_ratios(records, "peak_bytes")
    time = _expected_ratios(records, "time_median_s", trusted_only=True)
    assert set(table.index) == {"train", *memory}
    for mode, (ratios, _) in memory.items():
        assert table.loc[mode, "peak memory vs train"] == _cell(ratios), mode
    for mode, (ratios, left_out) in time.items():
        assert table.loc[mode, "time vs train"] == _cell(ratios), mode
        timed = len(ratios) + left_out
        assert table.loc[mode, "time from"] == (f"{len(ratios)} of {timed}"
                                                + (f"; {left_out} untrusted left out" if left_out else "")), mode
    # eval_no_grad's cnn timing and the transformer's train timing are untrusted: one trusted ratio is left
    assert time["eval_no_grad"] == ([0.5e-3 / 1.0e-3], 2)


def test_the_answer_counts_behaviour_and_saved_bytes_per_workload():
    records = [r for r in _read() if r["step"] == "forward" and r["status"] == "ok"]
    row = answer(gradbench.load(RECORDS)).table.loc["no_grad"]
    mine = [r for r in records if r["mode"] == "no_grad"]
    with_bn = [r for r in mine if r["bn_batch_stats"] is not None]
    assert row["workloads"] == str(len(mine))
    assert row["Dropout active"] == f"yes in {len(mine)}/{len(mine)}"
    no_bn = len(mine) - len(with_bn)
    assert row["BatchNorm statistics used"] == f"batch in {len(with_bn)}/{len(with_bn)} ({no_bn} n/a)"
    assert row["saved for backward"] == f"0 in {len(mine)}/{len(mine)}"
    ev = answer(gradbench.load(RECORDS)).table.loc["eval"]
    evals = [r for r in records if r["mode"] == "eval"]
    assert ev["workloads"] == f"{len(evals)} ({len(evals) - 1} with train)"  # mlp b1's train is not_applicable
    assert ev["graph recorded"] == f"yes in {len(evals)}/{len(evals)}"


def test_the_sentences_are_written_from_the_numbers():
    found = answer(gradbench.load(RECORDS))
    [sentence] = [s for s in found.sentences if s.startswith("eval_no_grad:")]
    memory = _expected_ratios(_read(), "peak_bytes")["eval_no_grad"][0]
    assert f"{ratio_text(min(memory), suffix='')}{DASH}{ratio_text(max(memory))} train's peak memory" in sentence
    assert f"(median {ratio_text(statistics.median(memory))}, {len(memory)} workloads)" in sentence
    assert "2 untrusted left out" in sentence
    assert "Dropout off, BatchNorm uses running statistics and leaves them unchanged, no graph" in sentence
    assert any(s.startswith("train: the baseline") for s in found.sentences)


def test_an_untrusted_extreme_never_enters_a_range_nor_a_finding(tmp_path):
    records = _read()
    for r in records:  # cnn's eval_no_grad, untrusted, now absurdly fast
        if (r["model"], r["mode"], r["step"]) == ("cnn", "eval_no_grad", "forward"):
            assert r["time_trusted"] is False
            r["time_median_s"], r["samples_s"] = 1e-9, [1e-9] * 5
    df = gradbench.load(_write(tmp_path, records))
    before, after = answer(gradbench.load(RECORDS)).table, answer(df).table
    assert after.loc["eval_no_grad", "time vs train"] == before.loc["eval_no_grad", "time vs train"]
    texts = [f.text for f in findings(df)]
    fastest = [t for t in texts if t.startswith("Fastest forward")]
    assert fastest and not any("eval_no_grad on cnn" in t for t in fastest)
    assert not any("1e-06 ms" in t or "1e-09" in t for t in texts)


@pytest.mark.parametrize("value, decimals, text", [
    (0.003, 2, "0.0030x"), (0.0031, 2, "0.0031x"), (0.051, 2, "0.051x"), (0.25, 2, "0.25x"), (1.5, 2, "1.50x"),
    (12.345, 2, "12.35x"), (0.0, 2, "0.00x"), (None, 2, "-"), (float("nan"), 2, "-"), (0.004, 3, "0.0040x"),
    (1.0, 3, "1.000x"), (2e-9, 2, "2.0e-09x"),
])
def test_a_ratio_prints_with_its_significant_digits(value, decimals, text):
    assert ratio_text(value, decimals) == text


def test_no_table_of_the_report_prints_a_small_ratio_as_zero(tmp_path):
    md = open(write_report(gradbench.load(RECORDS), str(tmp_path))["markdown"]).read()
    assert "0.0030x" in md  # transformer eval_no_grad: 6,000 of 2,000,000 bytes
    assert not re.search(r"(?<![\d.])0\.00x", md)


def _headings_with_nothing_under(md: str) -> list[str]:
    lines = [line for line in md.splitlines() if line.strip()]
    empty = []
    for i, line in enumerate(lines):
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            after = lines[i + 1] if i + 1 < len(lines) else None
            if after is None or (after.startswith("#") and len(after) - len(after.lstrip("#")) <= level):
                empty.append(line)
    return empty


@pytest.mark.parametrize("status", ["error", "not_applicable"])
def test_a_report_without_a_measurement_has_no_empty_heading(tmp_path, status):
    records = [dict(r, status=status, error="RuntimeError: boom", time_median_s=None, samples_s=None,
                    peak_bytes=None, saved_bytes=None, time_trusted=None, graph_recorded=None) for r in _read()]
    paths = write_report(gradbench.load(_write(tmp_path, records)), str(tmp_path / "out"))
    md = open(paths["markdown"]).read()
    assert _headings_with_nothing_under(md) == []
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings[-1] == "## Environment" and "## The answer" not in headings and "## Figures" not in headings
    assert "## Measured behaviour of every mode" not in headings
    assert ("## Findings" in headings) == (status == "error")  # failures are findings; not_applicable is not


def test_a_full_report_has_no_empty_heading_and_leads_with_the_answer(tmp_path):
    md = open(write_report(gradbench.load(RECORDS), str(tmp_path))["markdown"]).read()
    assert _headings_with_nothing_under(md) == []
    h2 = [line for line in md.splitlines() if line.startswith("## ")]
    assert h2[0] == "## The answer" and h2[-2:] == ["## Timing trust", "## Environment"]


def test_a_missing_ratio_row_says_why(tmp_path):
    md = open(write_report(gradbench.load(RECORDS), str(tmp_path))["markdown"]).read()
    section = md.split("## Each mode as a ratio to train")[1].split("\n## ")[0]
    assert "| mlp/tiny b1 cpu float32 |" not in section
    assert ("No row for mlp/tiny b1 cpu float32: train not_applicable: BatchNorm normalises over the batch while "
            "the model is in train mode, and PyTorch refuses a batch of one.") in section


def test_the_heatmap_marks_untrusted_time_ratios(tmp_path, monkeypatch):
    drawn = []
    heatmap = figures.sns.heatmap
    monkeypatch.setattr(figures.sns, "heatmap", lambda data, **kw: drawn.append(kw["annot"]) or heatmap(data, **kw))
    figures.ratio_heatmaps(gradbench.load(RECORDS), str(tmp_path))
    time_panel, memory_panel = drawn
    # cnn eval_no_grad (its own timing) and every transformer mode (train's timing) rest on untrusted times
    assert sum(str(v).endswith("\u2020") for row in time_panel for v in row) == 1 + 5
    assert not any(str(v).endswith("\u2020") for row in memory_panel for v in row)


@pytest.mark.parametrize("params, version", [
    ({"python": "3.11"}, "3.11"),
    ({"python": "/usr/bin/python3.12"}, "3.12"),
    ({"python": "/work/.venv/bin/python", "python_version": "3.11.7"}, "3.11.7"),
    ({"python": "/work/.venv/bin/python"}, None),
])
def test_asv_results_give_the_python_version_not_the_interpreters_path(params, version):
    assert python_version(params) == version


def test_an_asv_result_of_python_same_shows_a_version_in_the_environment_table(tmp_path):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    for path in (folder / "vm-cpu").glob("*-virtualenv-*.json"):
        data = json.loads(path.read_text())
        data["params"]["python"] = data["python"] = "/usr/local/bin/python3.11"
        path.write_text(json.dumps(data))
    df = gradbench.load(str(folder))
    assert set(df["python"]) == {"3.11"}


def _golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if UPDATE:
        with open(path, "w") as f:
            f.write(text)
    assert text == open(path).read(), f"{name} differs from its golden file (GRADBENCH_UPDATE_GOLDEN=1 to renew)"


def test_report_md_equals_its_golden_file(tmp_path):
    paths = write_report(gradbench.load(RECORDS), str(tmp_path), title="gradbench report: golden records")
    md = open(paths["markdown"]).read()
    md = re.sub(r"written \S+ by gradbench \S+\.", "written TIME by gradbench VERSION.", md, count=1)
    _golden("report.md", md)


def test_compare_table_equals_its_golden_file(capsys):
    assert main(["compare", RECORDS, OTHER, "--by", "machine"]) == 0
    out = capsys.readouterr().out
    assert "0.0040" in out  # mlp b8 eval_no_grad is 0.004x as long on the other machine
    _golden("compare.txt", out)


def test_a_model_without_dropout_is_not_counted_as_a_workload_with_dropout():
    """dropout_active is false, never null, where a model has no Dropout: "Dropout on in 2 of 3 workloads with
    Dropout" would claim the third has one."""
    records = _read()
    for r in records:
        if r["model"] == "cnn" and r["status"] == "ok":
            r["dropout_active"] = False  # as a model with no stochastic layer records it
    found = answer(_load(records))
    [sentence] = [s for s in found.sentences if s.startswith("train:")]
    assert "Dropout on in 2 of 3 workloads" in sentence
    assert "with Dropout" not in sentence


def _load(records):
    import tempfile
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "records.jsonl")
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    return gradbench.load(path)


def test_a_mode_beside_a_train_without_a_peak_is_not_said_to_lack_train():
    """train ran in every workload but its peak was not measured (an asv or pytest-benchmark file without
    memory): the answer does not say train did not run, and a time ratio says whose time it is."""
    records = [r for r in _read() if r["model"] != "mlp"]
    for r in records:
        if r["mode"] == "train":
            r["peak_bytes"] = None
    found = answer(_load(records))
    assert found.table.loc["eval", "workloads"] == "2"
    [sentence] = [s for s in found.sentences if s.startswith("eval:")]
    assert "did not run" not in sentence
    assert "train's time" in sentence and "its time" not in sentence


def test_a_ratio_is_taken_within_one_machine_then_the_median_over_machines(tmp_path):
    """Two machines' files of the same workload: eval is 0.5x train on one and 0.25x on the other. The ratio is
    the median of theirs (0.375x), never one machine's eval over the median of both machines' train."""
    base = [r for r in _read() if r["model"] == "mlp" and r["batch_size"] == 8 and r["step"] == "forward"
            and r["mode"] in ("train", "eval")]
    files = []
    for machine, train_s in (("box", 2e-3), ("other", 4e-3)):
        recs = json.loads(json.dumps(base))
        for r in recs:
            r.update(machine=machine, time_trusted=True, time_median_s=train_s if r["mode"] == "train" else 1e-3)
        files.append(_write(tmp_path, recs, f"{machine}.jsonl"))
    df = gradbench.load(files)
    assert answer(df).table.loc["eval", "time vs train"] == ratio_text(0.375)
    from gradbench.report.tables import summary_tables
    assert summary_tables(df)["median time vs train"]["eval"].tolist() == [ratio_text(0.375)]


def test_time_from_counts_the_timings_whose_contention_was_not_judged():
    """pytest-benchmark and asv measure no contention: their timings enter the ranges (they are not untrusted),
    and 'time from' says how many of them were never judged, rather than passing them off as trusted ones."""
    bench = os.path.join(os.path.dirname(__file__), "fixtures", "results", "pytest-benchmark.json")
    df = gradbench.load(bench)
    forward = df[(df["step"] == "forward") & (df["mode"] == "eval") & (df["status"] == "ok")]
    assert len(forward) and forward["time_trusted"].isna().all()
    table = answer(df).table
    assert table.loc["eval", "time from"] == f"{len(forward)} of {len(forward)}; {len(forward)} not judged"
    judged = answer(gradbench.load(RECORDS)).table  # gradbench's own timings are all judged
    assert "not judged" not in " ".join(judged["time from"])


def test_a_report_of_not_applicable_cases_only_says_why_nothing_was_measured(tmp_path):
    """Not a finding and no table: without a word in the header, such a report is a title and an environment."""
    records = [dict(r, status="not_applicable", error="BatchNorm needs more than one value per channel",
                    time_median_s=None, samples_s=None, peak_bytes=None, saved_bytes=None, time_trusted=None,
                    graph_recorded=None) for r in _read()]
    md = open(write_report(gradbench.load(_write(tmp_path, records)), str(tmp_path / "out"))["markdown"]).read()
    header = md.split("\n## ")[0]
    assert "not_applicable: BatchNorm needs more than one value per channel" in header


def test_workloads_at_two_sequence_lengths_are_two_rows_and_a_model_without_one_keeps_its_row(tmp_path):
    """The golden transformer records (migrated: seq_len 32) again at seq_len 64, twice as slow: every table and
    figure keeps them apart, names them by the case text, and a model that takes no seq_len (null) keeps its row."""
    records = _read()
    longer = [{**r, "seq_len": 64, "format_version": 6, "image_size": None,
               "time_median_s": 2 * r["time_median_s"] if r.get("time_median_s") else r.get("time_median_s"),
               "samples_s": [2 * s for s in r["samples_s"]] if r.get("samples_s") else r.get("samples_s")}
              for r in records if r["model"] == "transformer"]
    out = write_report(gradbench.load(_write(tmp_path, records + longer)), str(tmp_path / "report"))
    md = open(out["markdown"]).read()
    section = md.split("## Each mode as a ratio to train")[1].split("\n## ")[0]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ") and "b8" in line]
    assert {"mlp/tiny b8 cpu float32", "transformer/tiny b8 s32 cpu float32", "transformer/tiny b8 s64 cpu float32"} \
        <= set(rows)
    assert "### transformer/tiny b8 s64 cpu float32" in md and "### mlp/tiny b8 cpu float32" in md
    assert not re.search(r"\bnan\b|\bNaN\b|\b0px\b|\bs0\b", md)
    assert len(answer(gradbench.load(_write(tmp_path, records + longer))).table) > 0
    frame = gradbench.load(_write(tmp_path, records + longer))
    assert set(figures.sized_with_axes(frame)["size"]) == {"tiny", "tiny s32", "tiny s64"}
