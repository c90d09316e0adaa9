"""gradbench capacity: the search's arithmetic with scripted memory, then real cases whose answer is
re-measured by a fresh pipeline run: batch B fits the budget and B + 1 does not."""
import json
import os

import pytest

from gradbench.capacity import capacity_of, find_capacity, parse_size
from gradbench.cli import main
from gradbench.session import run_case

MODEL = os.path.join(os.path.dirname(__file__), "fixtures", "user_models.py") + ":capacity_net"
BUDGET = 8 * 2**20


@pytest.mark.parametrize("text, value", [("512MiB", 512 * 2**20), ("8GiB", 8 * 2**30), ("24GB", 24 * 10**9),
                                         ("1.5 kib", 1536), ("4096", 4096), ("2mb", 2 * 10**6)])
def test_budget_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-5MiB", "0GB", "8 GiBs", "1e9"])
def test_bad_budget_sizes_name_the_forms_they_take(text):
    with pytest.raises(ValueError, match="bad memory budget .*512MiB, 8GiB or 24GB"):
        parse_size(text)


def _scripted(bytes_of):
    calls = []

    def needed(batch):
        calls.append(batch)
        return bytes_of(batch)

    return needed, calls


@pytest.mark.parametrize("bytes_of", [
    lambda b: 1000 + 37 * b,  # a line: found from the prediction
    lambda b: 1000 + 37 * b + (900 if b % 5 == 0 else 0),  # jagged: the line is only a guide
    lambda b: 1000 + 3 * b * b,  # curved: the search walks to it
    lambda b: None if b > 777 else 10 * b,  # out of memory past 777 while far under the budget
])
def test_the_answer_fits_and_the_next_batch_does_not(bytes_of):
    budget = 100_000
    needed, calls = _scripted(bytes_of)
    found = find_capacity(needed, budget)
    b = found.max_batch_size
    assert bytes_of(b) is not None and bytes_of(b) <= budget
    assert bytes_of(b + 1) is None or bytes_of(b + 1) > budget
    assert found.bytes_at_max == bytes_of(b) and found.bytes_at_next == bytes_of(b + 1)
    assert len(calls) == len(set(calls))  # each batch measured once


def test_a_line_is_found_in_a_few_measurements():
    needed, calls = _scripted(lambda b: 1000 + 37 * b)
    found = find_capacity(needed, 100_000)
    assert found.max_batch_size == (100_000 - 1000) // 37 and len(calls) <= 12  # never more than 4x past a fit
    assert found.fixed_bytes == pytest.approx(1000) and found.bytes_per_sample == pytest.approx(37)


def test_memory_that_grows_faster_than_the_line_is_found_quickly_without_leaping_past_it():
    """A quadratic need: the line through small batches predicts far too much; the search never measures
    more than 4x past a batch that fit, and bisects when interpolation creeps."""
    needed, calls = _scripted(lambda b: 100_000 + 200 * b + 4 * b * b)
    found = find_capacity(needed, 64 * 2**20)
    assert found.bytes_at_max <= 64 * 2**20 < found.bytes_at_next
    assert len(calls) < 40 and max(calls) <= 4 * found.max_batch_size


def test_nothing_fits_and_nothing_grows():
    assert find_capacity(lambda b: 10**9, 1000).max_batch_size == 0
    flat = find_capacity(lambda b: 500, 1000, max_batch=64)
    assert flat.max_batch_size == 64 and flat.capped


def test_real_cases_fit_at_b_and_not_at_b_plus_1_by_fresh_records():
    """Re-measured by run_case, not by the search's own numbers; train (BatchNorm refuses batch 1) included."""
    found = {}
    for mode in ("train", "eval_no_grad"):
        out = capacity_of(MODEL, "default", "cpu", "float32", mode, "forward", BUDGET)
        b = out["max_batch_size"]
        assert b and b >= 2, out
        at_b, at_next = (run_case(MODEL, "default", n, mode=mode, max_time_s=0.01) for n in (b, b + 1))
        assert at_b["held_bytes"] + at_b["peak_bytes"] <= BUDGET < at_next["held_bytes"] + at_next["peak_bytes"]
        assert out["bytes_at_max"] == at_b["held_bytes"] + at_b["peak_bytes"]
        found[mode] = out
    # a mode that records no graph keeps no activations for backward: it fits more
    assert found["eval_no_grad"]["max_batch_size"] > found["train"]["max_batch_size"]
    # the search started from the prediction (fake tensors), whose own search went round BatchNorm's refusal
    # of batch 1, and two measurements bracketed the answer: train's exactly; eval_no_grad's one too high
    # (BatchNorm's inference kernel allocates two per-channel buffers no prediction sees), then the batch below
    assert found["train"]["predicted_max_batch_size"] == found["train"]["max_batch_size"]
    assert found["eval_no_grad"]["predicted_max_batch_size"] - found["eval_no_grad"]["max_batch_size"] in (0, 1)
    for out in found.values():
        assert len(out["measured_batches"]) == 2 and not out["error"], out


def test_without_a_prediction_the_search_probes_from_batch_2_where_batch_1_is_refused(monkeypatch):
    from gradbench import capacity

    monkeypatch.setattr(capacity, "_predicted_answer", lambda *a: (None, None, None))
    out = capacity_of(MODEL, "default", "cpu", "float32", "train", "forward", BUDGET)
    assert out["note"].startswith("batch 1 refused, probed from 2: ValueError") and not out["error"]
    assert len(out["measured_batches"]) > 2 and out["predicted_max_batch_size"] is None


def test_capacity_json_has_the_documented_fields(capsys):
    assert main(["capacity", "--models", MODEL, "--sizes", "default", "--modes", "eval_no_grad", "frozen",
                 "--steps", "train_step", "--memory-budget", "8MiB", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for key in ("model", "size", "mode", "step", "device", "dtype", "memory_budget_bytes", "max_batch_size",
                "fixed_bytes", "bytes_per_sample", "bytes_at_max", "bytes_at_next", "samples_per_s"):
        assert all(key in r for r in rows), key
    assert all(r["max_batch_size"] is None and "records no autograd graph" in r["error"] for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--memory-budget", "lots"], "bad memory budget 'lots'"),
    ([], "--memory-budget is required on cpu"),
    (["--memory-budget", "1GiB", "--modes", "evil"], "unknown mode 'evil'"),
])
def test_bad_capacity_input_is_one_line_and_exit_2(capsys, args, message):
    assert main(["capacity", "--models", "mlp", "--sizes", "tiny", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_budget_too_small_for_one_sample_is_a_result(capsys):
    assert main(["capacity", "--models", MODEL, "--sizes", "default", "--modes", "eval_no_grad",
                 "--memory-budget", "1KiB", "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["max_batch_size"] == 0 and row["error"].startswith("batch 1 does not fit")



def test_capacity_records_make_the_reports_capacity_section(tmp_path, capsys):
    out = tmp_path / "cap.jsonl"
    assert main(["capacity", "--models", MODEL, "--sizes", "default", "--modes", "train", "eval_no_grad",
                 "--memory-budget", "8MiB", "--time", "--format", "json", "--out", str(out)]) == 0
    rows = {r["mode"]: r for r in json.loads(capsys.readouterr().out)}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["source"] for r in records} == {"capacity"} and {r["kind"] for r in records} == {"capacity_probe"}
    assert {r["memory_budget_bytes"] for r in records} == {BUDGET}
    for mode, row in rows.items():
        mine = [r for r in records if r["mode"] == mode]
        assert {r["capacity_batch_size"] for r in mine} == {row["max_batch_size"]}
        assert sorted({r["batch_size"] for r in mine}) == row["measured_batches"]
        assert sum(r["time_median_s"] is not None for r in mine) == 1  # --time: the answer, timed
    report = tmp_path / "report"
    tiny = os.path.join(os.path.dirname(__file__), "fixtures", "results", "tiny.jsonl")
    assert main(["report", str(out), tiny, "--out", str(report)]) == 0
    md = (report / "report.md").read_text()
    section = md.split("## Capacity: the largest batch in a memory budget")[1].split("\n## ")[0]
    for mode, row in rows.items():
        line = next(x for x in section.splitlines() if f"| {mode} |" in x)
        assert f"| {row['max_batch_size']} |" in line  # the report re-derives the CLI's answer
    assert (report / "figures" / "capacity.png").exists()
    alone = tmp_path / "alone"
    assert main(["report", tiny, "--out", str(alone)]) == 0  # capacity records stay out of the rest
    findings = "## Findings"
    expected = (alone / "report.md").read_text().split(findings)[1].split("\n## ")[0]
    assert md.split(findings)[1].split("\n## ")[0] == expected


def test_cuda_budget_defaults_to_free_memory_and_cpu_needs_one(monkeypatch):
    """The CUDA arithmetic with a fake allocator: the default budget is the free memory at start."""
    import torch

    from gradbench.capacity import default_budget

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (3 * 2**30, 80 * 2**30))
    assert default_budget("cuda:1") == 3 * 2**30 and asked == [torch.device("cuda:1")]
    with pytest.raises(ValueError, match="--memory-budget is required on cpu"):
        default_budget("cpu")


def test_running_out_of_memory_is_a_does_not_fit_point(monkeypatch):
    """An out-of-memory error at a batch is recorded as status oom and counts as not fitting."""
    import torch

    import gradbench.pipeline as pipeline
    from gradbench.capacity import case_needs

    real_prepare = pipeline.prepare

    def prepare(case, workload, *args, **kwargs):
        if case.batch_size > 40:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_prepare(case, workload, *args, **kwargs)

    monkeypatch.setattr(pipeline, "prepare", prepare)
    needed = case_needs(MODEL, "default", "cpu", "float32", "eval_no_grad", "forward")
    found = find_capacity(needed, 2**40)  # a budget nothing reaches: out of memory decides
    assert found.max_batch_size == 40 and found.bytes_at_next is None
    assert needed.records[41]["status"] == "oom" and "out of memory" in needed.records[41]["error"]


def test_the_timed_record_at_the_answer_is_read_even_when_untrusted(tmp_path):
    """--time writes a timed record at the answer after its memory-only one: reading keeps the timing."""
    from gradbench.results import read_gradbench_jsonl
    from gradbench.record import new_record

    base = dict(model="mlp", size="tiny", batch_size=64, device="cpu", dtype="float32", mode="train",
                step="forward", status="ok", source="capacity", held_bytes=10, peak_bytes=20,
                memory_budget_bytes=2 ** 20, capacity_batch_size=64)  # as every capacity record carries them
    path = tmp_path / "cap.jsonl"
    path.write_text(json.dumps(new_record(**base)) + "\n" + json.dumps(new_record(
        **base, time_median_s=0.01, samples_s=[0.01] * 5, time_trusted=False, time_distrust="imprecise")) + "\n")
    [record], _ = read_gradbench_jsonl(path)
    assert record["time_median_s"] == 0.01
