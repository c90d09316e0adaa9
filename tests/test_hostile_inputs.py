"""Results files written by someone else (issue 24, safety and truth, round 3): what a record holds must
never choose where the report writes, put markup or formulas into what it writes, hang a reader, or pass
a gate that compared nothing. Each test here failed on the code before its fix (commit 77fdf44)."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from gradbench.cli import main

RESULTS = os.path.join(os.path.dirname(__file__), "fixtures", "results")
JSONL = os.path.join(RESULTS, "tiny.jsonl")
PYTEST_JSON = os.path.join(RESULTS, "pytest-benchmark.json")
ASV_DIR = os.path.join(RESULTS, "asv")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAVERSAL = "x/../../../owned"  # from out/figures/NAME_x: up to the folder holding out/


def _records(path=JSONL) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def _write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _files_under(folder) -> set[str]:
    return {os.path.join(d, f) for d, _, names in os.walk(folder) for f in names}


def _report_writes_only_into_out(tmp_path, capsys, inputs) -> str:
    """Run `report` on ``inputs`` into tmp_path/out/report: every file it writes lies in that folder."""
    out = tmp_path / "out" / "report"
    before = _files_under(tmp_path)
    code = main(["report", *inputs, "--out", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and code in (0, 2), err
    written = _files_under(tmp_path) - before
    assert all(path.startswith(str(out) + os.sep) for path in written), sorted(written)
    assert not any("owned" in name for name in os.listdir(tmp_path))
    return err


# ---------------------------------------------------------------- 5. negative bytes and counts

@pytest.mark.parametrize("field", ["peak_bytes", "held_bytes", "saved_bytes", "n_samples", "batch_size",
                                   "grads_computed", "capacity_batch_size"])
def test_a_negative_byte_or_count_field_is_skipped(tmp_path, field):
    from gradbench.record import kind_errors
    from gradbench.results import read_jsonl

    records = _records()
    ok = next(i for i, r in enumerate(records) if r["status"] == "ok")
    records[ok][field] = -1
    assert kind_errors(records[ok]) == [f"{field}=-1 is below 0"]  # was: []
    kept, warnings = read_jsonl(_write_jsonl(tmp_path / "negative.jsonl", records))
    assert len(kept) == len(records) - 1 and f"{field}=-1 is below 0" in warnings[0]
    assert kind_errors(dict(records[ok], **{field: 0})) == []
