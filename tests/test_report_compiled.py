"""The report's compiled section, on fabricated records whose numbers are known."""
import json
import re

import pandas as pd
import pytest

import gradbench
from gradbench.record import new_record
from gradbench.report.compilation import (compiled_blocks, compiled_groups, has_compiled, paired, recompile_table,
                                       versus_table)
from gradbench.report.document import build_blocks, write_report
from gradbench.report.answer import answer
from gradbench.report.tables import UNTRUSTED_MARK
from gradbench.frame import to_frame

# as torch 2.13's dynamo words them (gradbench.compiled keeps the first line, without the entry's "0/1: ")
RECOMPILE_REASON = ("tensor 'self._modules['head']._parameters['bias']' requires_grad mismatch. expected "
                    "requires_grad=1. Guard failed on a parameter, consider using "
                    "torch._dynamo.config.force_parameter_static_shapes = False to allow dynamism on parameters.")
GLOBAL_STATE = "GLOBAL_STATE changed: grad_mode"


def _case(mode, compile="none", step="forward", time=2e-3, peak=1000, second=0, **fields):
    """An ok, trusted record of mlp/tiny b8 cpu float32 from run r1 on one machine."""
    values = dict(model="mlp", size="tiny", batch_size=8, device="cpu", dtype="float32", mode=mode, step=step,
                  compile=compile, autocast="none", status="ok", time_median_s=time, time_trusted=True,
                  peak_bytes=peak, held_bytes=4000, saved_bytes=None, run_id="r1", source="gradbench",
                  machine="box", timestamp=f"2026-01-01T10:00:{second:02d}+00:00")
    if compile != "none":
        values.update(compiles=0, recompiles=0, recompile_reasons=[], graph_breaks=0, compile_time_s=0.0)
    return new_record(**{**values, **fields})


def _compiled_group():
    """Eager train, eval and eval_no_grad; the compiled group ran train, then eval (recompiled), then
    eval_no_grad (reused the code eval compiled)."""
    eager = [_case("train", time=2e-3, peak=1000, saved_bytes=800, second=1),
             _case("eval", time=2e-3, peak=900, saved_bytes=800, second=2),
             _case("eval_no_grad", time=1e-3, peak=200, saved_bytes=0, second=3)]
    compiled = [_case("train", "default", time=1e-3, peak=600, saved_bytes=500, compiles=1, compile_time_s=3.0,
                      second=10),
                _case("eval", "default", time=1.5e-3, peak=300, saved_bytes=100, compiles=1, recompiles=1,
                      recompile_reasons=[GLOBAL_STATE, GLOBAL_STATE], compile_time_s=2.0, second=20),
                _case("eval_no_grad", "default", time=0.5e-3, peak=150, second=30)]
    return eager + compiled


def _write(tmp_path, records, name="run.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _text(blocks) -> str:
    """Every sentence and table cell of blocks, as one string."""
    parts = []
    for block in blocks:
        if block[0] == "table":
            parts.append(block[1].to_string())
        elif block[0] == "findings":
            parts += [f.text for f in block[1]]
        else:
            parts.append(str(block[1]))
    return "\n".join(parts)


def _findings(blocks):
    return [f.text for block in blocks if block[0] == "findings" for f in block[1]]


def test_ratio_is_compiled_over_eager_of_the_same_case():
    df = to_frame(_compiled_group())
    pairs = {c["mode"]: (c, e) for c, e in paired(df)}
    compiled, eager = pairs["eval"]
    assert eager["compile"] == "none" and eager["mode"] == "eval" and compiled["compile"] == "default"
    table = versus_table(list(pairs.values())).set_index("mode")
    assert table.loc["eval", "time compiled/eager"] == f"{1.5e-3 / 2e-3:.2f}x"
    assert table.loc["eval", "peak compiled/eager"] == f"{300 / 900:.2f}x"
    assert table.loc["eval", "held+peak compiled/eager"] == f"{4300 / 4900:.2f}x"
    assert table.loc["train", "time compiled/eager"] == "0.50x"
    assert table.loc["eval", "eager ms"] == "2" and table.loc["eval", "compiled ms"] == "1.5"


def test_a_ratio_resting_on_an_untrusted_timing_carries_the_mark():
    records = _compiled_group()
    records[4] = dict(records[4], time_trusted=False, time_distrust="busy")  # compiled eval
    table = versus_table(paired(to_frame(records))).set_index("mode")
    assert table.loc["eval", "time compiled/eager"].endswith(UNTRUSTED_MARK)
    assert table.loc["eval", "compiled ms"].endswith(UNTRUSTED_MARK)
    assert not table.loc["eval", "peak compiled/eager"].endswith(UNTRUSTED_MARK)  # memory is not timing
    assert not table.loc["train", "time compiled/eager"].endswith(UNTRUSTED_MARK)


def test_a_compiled_case_without_its_eager_case_has_no_ratio():
    records = [r for r in _compiled_group() if not (r["compile"] == "none" and r["mode"] == "eval")]
    records.append(_case("frozen", "default", second=40))  # never run eager
    records.append(_case("eval", machine="another-box"))  # eager, but measured elsewhere: no counterpart
    df = to_frame(records)
    pairs = {c["mode"]: e for c, e in paired(df)}
    assert pairs["eval"] is None and pairs["frozen"] is None and pairs["train"] is not None
    table = versus_table(paired(df)).set_index("mode")
    for mode in ("eval", "frozen"):
        assert table.loc[mode, "eager ms"] == "no eager record"
        assert table.loc[mode, "time compiled/eager"] == "-" and table.loc[mode, "peak compiled/eager"] == "-"
    assert "2 compiled case(s) have no eager record" in _text(compiled_blocks(df, df))


def test_the_eager_case_of_the_same_run_is_preferred_to_a_newer_one():
    records = _compiled_group()
    records.append(_case("eval", time=8e-3, run_id="r2", timestamp="2026-02-01T00:00:00+00:00"))
    [(compiled, eager)] = [(c, e) for c, e in paired(to_frame(records)) if c["mode"] == "eval"]
    assert eager["run_id"] == "r1" and eager["time_median_s"] == 2e-3


def test_recompile_table_is_in_the_order_the_group_ran_with_its_reasons():
    first, second, third = _compiled_group()[3:]
    late = dict(first, mode="frozen", timestamp="2026-01-01T10:00:30+00:00")  # the same second as third
    records = [second, third, late, first]  # file order differs from run order
    [group] = compiled_groups(to_frame(records))
    table = recompile_table(group)
    assert table["mode"].tolist() == ["train", "eval", "eval_no_grad", "frozen"]  # a tie keeps file order
    assert table["time"].tolist() == ["10:00:10", "10:00:20", "10:00:30", "10:00:30"]
    eval_row = table[table["mode"] == "eval"].iloc[0]
    assert eval_row["guards failed"] == "grad mode"  # the switch, once
    assert eval_row["recompiles"] == "1" and eval_row["compiles"] == "1" and eval_row["compile s"] == "2.00"
    assert "cold" not in table  # shown only when a case ran cold


def test_recompile_table_names_the_switches_shortens_unknown_guards_and_shows_cold_cases():
    reason = "guard failed: " + "x" * 200
    records = [_case("train", "default", compiles=1, compile_cold=True, second=1),
               _case("eval", "default", compiles=1, recompiles=1, recompile_reasons=[reason, RECOMPILE_REASON],
                     compile_cold=True, second=2)]
    table = recompile_table(compiled_groups(to_frame(records))[0]).set_index("mode")
    shown = table.loc["eval", "guards failed"]
    assert shown.startswith("guard failed: xxx") and "..., " in shown and shown.endswith(", requires_grad")
    assert len(shown.split(", ")[0]) == 80
    assert table["cold"].tolist() == ["yes", "yes"]


def test_groups_of_separate_runs_are_separate_tables():
    records = _compiled_group() + [dict(r, run_id="r2") for r in _compiled_group()[3:]]
    groups = compiled_groups(to_frame(records))
    assert [g["run_id"].iloc[0] for g in groups] == ["r1", "r2"] and all(len(g) == 3 for g in groups)


def test_findings_name_the_switch_that_recompiled_and_not_the_ones_that_did_not():
    df = to_frame(_compiled_group())
    found = _findings(compiled_blocks(df, df))
    [recompiled] = [f for f in found if "recompiled" in f]
    assert re.search(r"\beval forward \(in 1 of 1 group\(s\); guards on grad mode\)", recompiled)
    assert "eval_no_grad" not in recompiled and not re.search(r"\btrain forward \(", recompiled)
    [reused] = [f for f in found if "reused" in f]
    assert "eval_no_grad forward" in reused and not re.search(r"\beval forward|\btrain forward", reused)


def test_findings_compare_what_eval_alone_saves_eager_and_compiled():
    df = to_frame(_compiled_group())
    [memory] = [f for f in _findings(compiled_blocks(df, df)) if "eval alone" in f]
    # eager: eval 900 of train's 1000 (saved 10%); compiled: 300 of 600 (saved 50%)
    assert "eval alone saved 10% of train's forward peak memory eager and saved 50% of it under compile=default" \
        in memory
    assert "800 B for backward in eval against train's 800 B eager, 100 B against 500 B compiled" in memory


def test_findings_give_the_range_of_compiled_time_ratios():
    records = _compiled_group() + [dict(r, batch_size=16, time_median_s=r["time_median_s"] * (2 if
                                        r["compile"] == "none" else 1)) for r in _compiled_group()]
    df = to_frame(records)
    [times] = [f for f in _findings(compiled_blocks(df, df)) if "as a ratio to eager" in f]
    # train: 1/2 at b8, 1/4 at b16; eval_no_grad: 0.5/1 and 0.5/2
    assert "train 0.25x to 0.50x (over 2 workloads), eval_no_grad 0.25x to 0.50x (over 2 workloads)" in times
    assert "eval_inference_mode" not in times  # not measured: not mentioned
    assert times.startswith("forward time under compile=default")


def test_findings_without_their_data_are_skipped():
    records = [r for r in _compiled_group() if r["compile"] != "none"]  # no eager records at all
    df = to_frame(records)
    found = _findings(compiled_blocks(df, df))
    assert not any("eval alone" in f or "as a ratio to eager" in f for f in found)
    assert not any("nan" in f.lower() for f in found)
    assert any("recompiled" in f for f in found)  # the order of the group is still known


def test_eager_only_data_has_no_compiled_section():
    df = to_frame(_compiled_group()[:3])
    assert not has_compiled(df) and compiled_blocks(df, df) == []
    text = _text(build_blocks(df, [], "/tmp", "eager"))
    assert "Compiled vs eager" not in text and "recompile" not in text.lower()


def test_a_compiled_record_that_failed_does_not_open_the_section():
    records = _compiled_group()[:3] + [_case("train", "default", status="error", error="boom",
                                             time_median_s=None)]
    assert not has_compiled(to_frame(records))


def test_records_without_compile_or_autocast_are_eager(tmp_path):
    old = [{k: v for k, v in r.items() if k not in ("compile", "autocast")} for r in _compiled_group()[:3]]
    df = gradbench.load(_write(tmp_path, old + _compiled_group()[3:]))
    assert set(df["compile"]) == {"none", "default"} and set(df["autocast"]) == {"none"}
    assert all(e is not None and e["compile"] == "none" for _, e in paired(df))
    raw = pd.DataFrame(old).assign(compile=None, autocast=None)  # nulls that no reader filled
    assert not has_compiled(raw) and paired(raw) == []


def test_autocast_is_set_against_the_same_eager_case_without_it():
    records = _compiled_group()[:3] + [_case("eval_no_grad", autocast="bfloat16", time=0.25e-3, peak=100,
                                             output_dtype="torch.bfloat16")]
    table = versus_table(paired(to_frame(records), "autocast"), "autocast")
    row = table.iloc[0]
    assert row["time autocast/no autocast"] == "0.25x" and row["peak autocast/no autocast"] == "0.50x"
    assert row["output dtype"] == "bfloat16" and row["autocast"] == "bfloat16"


def test_the_answer_keeps_compiled_and_eager_workloads_apart():
    """Each is set against its own train: eager 200 / 1000, compiled 150 / 600, two workloads, never one."""
    row = answer(to_frame(_compiled_group())).table.loc["eval_no_grad"]
    assert row["workloads"] == "2"
    assert row["peak memory vs train"].endswith(f"({200 / 1000:.2f}\u2013{150 / 600:.2f}x)")


def test_report_files_hold_the_compiled_section(tmp_path):
    records = _compiled_group() + [_case("eval_no_grad", autocast="bfloat16", time=0.25e-3,
                                         output_dtype="torch.bfloat16")]
    df = gradbench.load(_write(tmp_path, records))
    paths = write_report(df, str(tmp_path / "report"))
    assert any(p.endswith("compiled_vs_eager.png") for p in paths["figures"])
    md, page = open(paths["markdown"]).read(), open(paths["html"]).read()
    for text in (md, page):
        for heading in ("Compiled vs eager (torch.compile)", "Compiled vs eager, per mode",
                        "Autocast vs no autocast (eager)", "Compile and recompile, in the order each group ran",
                        "mlp/tiny b8 cpu float32 compile=default, run r1"):
            assert heading in text, heading
        assert "guards on grad mode" in text and "time compiled/eager" in text
    assert "#### mlp/tiny b8 cpu float32 compile=default, run r1" in md
    assert "<h4>mlp/tiny b8 cpu float32 compile=default, run r1</h4>" in page
    assert "| mlp/tiny b8 cpu float32 | default | forward | eval | 2 | 1.5 | 0.75x |" in md
    assert page.count("<table") >= 4 and "figures/compiled_vs_eager.png" in md


@pytest.mark.parametrize("several", [False, True])
def test_groups_name_their_process_only_when_a_run_had_several(several):
    group = _compiled_group()[3:]
    records = group + ([dict(r, repeat=2) for r in group] if several else [])
    df = to_frame(records)
    labels = [b[1] for b in compiled_blocks(df, df) if b[0] == "h4"]
    label = "mlp/tiny b8 cpu float32 compile=default, run r1"
    assert labels == ([f"{label}, process 1", f"{label}, process 2"] if several else [label])


def test_compare_by_compile_sets_each_compiled_case_against_eager_whatever_the_order():
    from gradbench.report.compare import compare

    records = _compiled_group()
    table, sides, only = compare(to_frame(records[3:] + records[:3]), "compile")  # compiled read first
    assert sides == ["none", "default"]
    ratios = dict(zip(table["mode"], table["time_ratio"]))
    assert ratios == pytest.approx({"train": 0.5, "eval": 0.75, "eval_no_grad": 0.5})


def test_guards_on_computed_numbers_read_as_one_kind():
    from gradbench.report.compilation import guard_kinds

    reasons = ["s == 0.2328774333000183  # (_dynamo/output_graph.py:3375 in x)", "s == -1e-05", GLOBAL_STATE]
    assert guard_kinds(reasons) == ["a number the forward computed", "grad mode"]


def test_pytest_benchmark_booleans_stored_as_0_1_are_read_back_as_booleans():
    from gradbench.importers.pytest_benchmark import read_pytest_benchmark

    info = dict(model="mlp", size="tiny", batch_size=8, device="cpu", dtype="float32", mode="eval", step="forward",
                compile="default", autocast="none", compile_cold=0, dropout_active=1, time_trusted=False)
    data = {"machine_info": {"node": "box"}, "commit_info": {}, "datetime": "2026-01-01T00:00:00",
            "benchmarks": [{"extra_info": info, "stats": {"median": 1e-3, "rounds": 5, "data": [1e-3] * 5}}]}
    [record] = read_pytest_benchmark("x.json", data)
    assert record["compile_cold"] is False and record["dropout_active"] is True and record["time_trusted"] is False
