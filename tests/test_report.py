"""Loading every source, the report files, and compare, on fixture files made with the real tools."""
import glob
import json
import os

import numpy as np
import pandas as pd
import pytest

import gradbench
from gradbench.cli import main
from gradbench.schema import RECORD_FIELDS

RESULTS = os.path.join(os.path.dirname(__file__), "fixtures", "results")
JSONL = os.path.join(RESULTS, "tiny.jsonl")
PYTEST_JSON = os.path.join(RESULTS, "pytest-benchmark.json")
ASV_DIR = os.path.join(RESULTS, "asv")


def test_load_gradbench_jsonl():
    df = gradbench.load(JSONL)
    assert set(RECORD_FIELDS) <= set(df.columns)
    assert len(df) == 32 and set(df["source"]) == {"gradbench"}
    assert set(df["status"]) == {"ok", "error", "not_applicable"}
    assert df["samples_s"].dropna().map(len).min() >= 5


def test_load_keeps_newest_record_of_a_resumed_case(tmp_path):
    lines = open(JSONL).read().splitlines()
    first = json.loads(lines[0])
    rerun = dict(first, time_median_s=123.0)
    path = tmp_path / "resumed.jsonl"
    path.write_text("\n".join(lines + [json.dumps(rerun)]) + "\n")
    df = gradbench.load(str(path))
    assert len(df) == 32
    same = df[(df["mode"] == first["mode"]) & (df["step"] == first["step"]) & (df["model"] == first["model"])
              & (df["batch_size"] == first["batch_size"])]
    assert same["time_median_s"].tolist() == [123.0]


def _ok_forward(path, mode="train"):
    """An ok forward record of the fixture, judged trusted; other modes of its case are derived from it."""
    first = next(json.loads(line) for line in open(path) if '"status": "ok"' in line and '"forward"' in line
                 and f'"mode": "{mode}"' in line)
    return dict(first, time_trusted=True, time_distrust=None)


def test_a_trusted_attempt_is_not_replaced_by_a_later_untrusted_one(tmp_path):
    first = _ok_forward(JSONL)
    attempts = [dict(first, attempt=1, time_median_s=2.0, time_trusted=False, time_distrust="busy"),
                dict(first, attempt=2, time_median_s=1.0),
                dict(first, attempt=3, time_median_s=3.0, time_trusted=False, time_distrust="busy")]
    path = tmp_path / "retried.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in attempts))
    df = gradbench.load(str(path))
    assert df["time_median_s"].tolist() == [1.0] and df["attempt"].tolist() == [2]


@pytest.mark.parametrize("failure", ["error", "timeout", "crashed"])
def test_a_failed_retry_never_hides_an_ok_measurement(tmp_path, failure):
    first = _ok_forward(JSONL)
    attempts = [dict(first, attempt=1, time_median_s=2.0, time_trusted=False, time_distrust="busy"),
                dict(first, attempt=2, status=failure, error="worker died", time_median_s=None,
                     time_trusted=None)]
    path = tmp_path / "failed-retry.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in attempts))
    df = gradbench.load(str(path))
    assert df["status"].tolist() == ["ok"] and df["time_median_s"].tolist() == [2.0]


def test_compare_says_when_there_is_no_interval():
    from gradbench.report.compare import interval_kind

    table = pd.DataFrame({"interval": ["none", "none"]})
    assert interval_kind(table).startswith("no confidence intervals")


def test_repeated_processes_are_kept_apart_on_load_and_combined_in_the_report(tmp_path):
    from gradbench.dataset import combined as combine
    from gradbench.report.tables import summary_tables

    train = _ok_forward(JSONL, "train")
    evng = dict(train, mode="eval_no_grad")
    records = [dict(train, repeat=k, time_median_s=t) for k, t in ((1, 1.0), (2, 1.2), (3, 1.1))]
    records += [dict(evng, repeat=1, time_median_s=0.5),
                dict(evng, repeat=2, time_median_s=9.0, time_trusted=False, time_distrust="busy")]
    path = tmp_path / "repeated.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    df = gradbench.load(str(path))
    assert len(df) == 5  # one record per case and process
    combined = combine(df).set_index("mode")
    assert combined.loc["train", "time_median_s"] == pytest.approx(1.1)  # median of the processes' medians
    assert combined.loc["eval_no_grad", "time_median_s"] == 0.5  # the untrusted process left out
    row = combined.loc["train"]  # interval and counts describe the pooled samples, not one process
    assert row["n_samples"] == 3 * len(train["samples_s"]) and len(row["samples_s"]) == row["n_samples"]
    pooled_median = float(np.median(row["samples_s"]))
    assert row["time_ci_low_s"] <= pooled_median <= row["time_ci_high_s"] and row["repeat"] is None
    table = summary_tables(df)["median time vs train"]
    assert table.iloc[0]["eval_no_grad"] == f"{0.5 / 1.1:.2f}x"


def test_untrusted_time_ratios_carry_the_mark(tmp_path):
    from gradbench.report.tables import UNTRUSTED_MARK, summary_tables

    train = _ok_forward(JSONL, "train")
    evng = dict(train, mode="eval_no_grad", time_median_s=train["time_median_s"] / 2)
    path = tmp_path / "marked.jsonl"
    path.write_text(json.dumps(train) + "\n" + json.dumps(dict(evng, time_trusted=False, time_distrust="x")) + "\n")
    tables = summary_tables(gradbench.load(str(path)))
    assert tables["median time vs train"].iloc[0]["eval_no_grad"].endswith(UNTRUSTED_MARK)
    assert not tables["median time vs train"].iloc[0]["train"].endswith(UNTRUSTED_MARK)
    assert not tables["peak memory vs train"].iloc[0]["eval_no_grad"].endswith(UNTRUSTED_MARK)  # memory is not timing


def test_an_older_file_with_an_imprecise_median_is_judged_on_reading(tmp_path):
    old = {k: v for k, v in _ok_forward(JSONL).items() if k not in ("time_trusted", "time_distrust")}
    rows = [dict(old, time_converged=False, time_median_s=1.0, time_ci_low_s=0.7, time_ci_high_s=1.2),
            dict(old, mode="eval", time_converged=False, time_median_s=1.0, time_ci_low_s=0.95, time_ci_high_s=1.04)]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = gradbench.load(str(path)).set_index("mode")
    assert df.loc[old["mode"], "time_trusted"] is False and "+-30%" in df.loc[old["mode"], "time_distrust"]
    assert df.loc["eval", "time_trusted"] is None  # precise, but contention unknown: not judged, not trusted


def test_load_pytest_benchmark_json():
    df = gradbench.load(PYTEST_JSON)
    assert set(df["source"]) == {"pytest-benchmark"}
    assert set(df["mode"]) >= {"train", "eval_no_grad"} and set(df["step"]) == {"forward", "train_step"}
    # each record's median and peak are the file's own, per benchmark (matched by mode and step)
    with open(PYTEST_JSON) as f:
        file = {(b["extra_info"]["mode"], b["extra_info"]["step"]): b for b in json.load(f)["benchmarks"]}
    read = {(r["mode"], r["step"]): (r["time_median_s"], r["peak_bytes"]) for r in df.to_dict("records")}
    assert read == {key: (b["stats"]["median"], b["extra_info"]["peak_bytes"]) for key, b in file.items()}
    assert df.loc[df["mode"] == "eval_no_grad", "dropout_active"].tolist() == [False]
    assert df["torch"].notna().all() and df["machine"].notna().all()


def test_asv_results_of_one_sample_are_read_as_untrusted_first_calls():
    """The fixture is an `asv run --quick` of gradbench 0.3.0: one sample per benchmark, a cold first call."""
    from gradbench.results import SINGLE_SAMPLE

    df = gradbench.load(ASV_DIR)
    timed = df[df["time_median_s"].notna()]
    assert not timed.empty and set(timed["n_samples"]) == {1}
    assert set(timed["time_trusted"]) == {False} and set(timed["time_distrust"]) == {SINGLE_SAMPLE}


def test_load_asv_results_folder():
    df = gradbench.load(ASV_DIR)
    assert set(df["source"]) == {"asv"}
    forward = df[df["step"] == "forward"]
    assert forward["time_median_s"].notna().all() and forward["peak_bytes"].notna().all()
    # peakmem_forward of gradbench 0.1's suite, still read: the cpu values of the file, mode by mode
    [result_file] = glob.glob(os.path.join(ASV_DIR, "*", "*-py*.json"))
    with open(result_file) as f:
        values, params = json.load(f)["results"]["bench_modes.Forward.peakmem_forward"][:2]
    modes = [m.strip("'") for m in params[-1]]
    cpu = dict(zip(modes, values[:len(modes)]))  # params vary last-fastest: the cpu block comes first
    assert forward.set_index("mode")["rss_peak_bytes"].to_dict() == cpu
    assert set(df["device"]) == {"cpu"}  # the cuda combinations were skipped and are not records
    assert df["torch"].notna().all() and df["git_commit"].str.len().eq(40).all()
    # a single machine folder works too
    [machine] = [d for d in os.listdir(ASV_DIR) if os.path.isdir(os.path.join(ASV_DIR, d))]
    assert len(gradbench.load(os.path.join(ASV_DIR, machine))) == len(df)


def test_load_several_sources_is_one_frame():
    df = gradbench.load([JSONL, PYTEST_JSON, ASV_DIR])
    assert set(df["source"]) == {"gradbench", "pytest-benchmark", "asv"}


@pytest.fixture
def report_dir(tmp_path):
    out = tmp_path / "report"
    assert main(["report", JSONL, PYTEST_JSON, ASV_DIR, "--out", str(out)]) == 0
    return out


def test_report_writes_figures_and_both_files(report_dir):
    figures = sorted(os.listdir(report_dir / "figures"))
    for name in ("latency_vs_batch_cpu_float32", "memory_vs_batch_cpu_float32", "ratio_to_train",
                 "saved_bytes_by_mode", "asv_history"):
        assert f"{name}.png" in figures and f"{name}.svg" in figures, name
    md = (report_dir / "report.md").read_text()
    html = (report_dir / "report.html").read_text()
    for text in (md, html):
        assert "Environment" in text and "Findings" in text and "Measured behaviour of every mode" in text
        assert "no_grad alone left the forward stochastic (Dropout active" in text
        assert "transformer fast path ran only in eval_no_grad" in text
    assert "figures/ratio_to_train.png" in md
    assert "data:image/png;base64," in html and "src='figures/" not in html  # self-contained


def test_report_findings_cite_their_records(report_dir):
    md = (report_dir / "report.md").read_text()
    run_id = json.loads(open(JSONL).readline())["run_id"]
    assert f"run {run_id}: transformer/tiny b8 s32 cpu float32 forward" in md


def _slower_copy(tmp_path, factor):
    """The tiny run as if measured on another machine that is `factor` times slower."""
    path = tmp_path / "slower.jsonl"
    with open(JSONL) as src, open(path, "w") as dst:
        for line in src:
            r = json.loads(line)
            r["machine"] = "slower-box"
            if r["time_median_s"] is not None:
                r["time_median_s"] *= factor
                r["samples_s"] = [s * factor for s in r["samples_s"]]
            dst.write(json.dumps(r) + "\n")
    return str(path)


def test_compare_reports_a_known_difference(tmp_path, capsys):
    other = _slower_copy(tmp_path, 1.5)
    assert main(["compare", JSONL, other, "--by", "machine", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "baseline 'vm' vs 'slower-box'" in out
    assert "1.500" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp" / "compare_by_machine.csv")
    assert ((table["time_ratio"] - 1.5).abs() < 1e-9).all()
    assert ((table["ci_low"] <= 1.5 + 1e-9) & (table["ci_high"] >= 1.5 - 1e-9)).all()
    assert (tmp_path / "cmp" / "compare_by_machine.png").exists()


def _judged_pair(tmp_path, factor, trusted):
    """The tiny run and a copy `factor` times slower on another machine, every timing judged `trusted`."""
    paths = []
    for name, source in (("base.jsonl", JSONL), ("other.jsonl", _slower_copy(tmp_path, factor))):
        lines = [json.loads(line) for line in open(source)]
        for r in lines:
            r["time_trusted"] = trusted
            r["time_distrust"] = None if trusted else "other processes used 40% of the CPUs (limit 10%)"
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
        paths.append(str(tmp_path / name))
    return paths


def test_compare_fail_above(tmp_path, capsys):
    base, other = _judged_pair(tmp_path, 1.5, trusted=True)
    assert main(["compare", base, other, "--by", "machine", "--fail-above", "20"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "within-process only" in out  # one run a side: it says what its interval lacks
    assert main(["compare", base, other, "--by", "machine", "--fail-above", "60"]) == 0


def test_compare_never_fails_on_untrusted_timings_and_lists_them(tmp_path, capsys):
    base, other = _judged_pair(tmp_path, 1.5, trusted=False)
    read = lambda path: [json.loads(line) for line in open(path)]  # noqa: E731
    steady = [dict(r, time_trusted=True, time_distrust=None) for r in read(base) if r["model"] != "mlp"]
    for path in (base, other):  # a workload trusted on both sides, and not slower: the gate judges something
        mlp = [r for r in read(path) if r["model"] == "mlp"]
        lines = mlp + [dict(r, machine=mlp[0]["machine"]) for r in steady]
        open(path, "w").write("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["compare", base, other, "--by", "machine", "--fail-above", "20"]) == 0
    out = capsys.readouterr().out
    assert "not judged" in out and "other processes used 40%" in out and "FAIL" not in out


def test_compare_gate_with_only_untrusted_timings_fails_having_judged_nothing(tmp_path, capsys):
    base, other = _judged_pair(tmp_path, 1.5, trusted=False)
    assert main(["compare", base, other, "--by", "machine", "--fail-above", "20"]) == 1  # was: 0, "OK"
    out = capsys.readouterr().out
    assert "not judged" in out and "other processes used 40%" in out  # still listed, with the reason
    [fail] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fail.startswith("FAIL: nothing judged: ") and "OK" not in out


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "-5"])
def test_compare_fail_above_must_be_a_finite_percentage(capsys, threshold):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", JSONL, JSONL, "--by", "machine", f"--fail-above={threshold}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    expected = "it must be >= 0" if threshold == "-5" else "expected a finite number"
    assert f"argument --fail-above: bad value {float(threshold)}; {expected}" in err


def test_compare_lists_cases_on_one_side_only(tmp_path, capsys):
    other = tmp_path / "partial.jsonl"
    lines = open(_slower_copy(tmp_path, 1.0)).read().splitlines()
    other.write_text("\n".join(line for line in lines if '"transformer"' not in line) + "\n")
    assert main(["compare", JSONL, str(other), "--by", "machine"]) == 0
    out = capsys.readouterr().out
    assert "cases only on vm; first: transformer/tiny" in out


def test_compare_needs_two_sides(capsys):
    assert main(["compare", JSONL, "--by", "gpu"]) == 2
    assert "needs inputs that differ in gpu" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ('{"model": "mlp", "mode": "eval", "st', "not a gradbench JSONL results file"),
    ("a,b\n1,2\n", "not a gradbench JSONL results file"),
])
def test_bad_input_files_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    for command in (["report", str(path), "--out", str(tmp_path / "r")], ["compare", JSONL, str(path), "--by", "machine"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_foreign_json_and_missing_path_exit_2(tmp_path, capsys):
    foreign = tmp_path / "x.json"
    foreign.write_text('{"hello": 1}')
    assert main(["report", str(foreign)]) == 2
    assert "not a gradbench JSONL results file" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty_dir = tmp_path / "d"
    empty_dir.mkdir()
    assert main(["report", str(empty_dir)]) == 2
    assert "not an asv results folder" in capsys.readouterr().err


def test_bootstrap_resamples_runs_first_so_between_process_variation_widens_the_interval():
    from gradbench.report.compare import bootstrap_ratio_ci

    rng = np.random.default_rng(1)
    # three processes each steady within (+-0.5%), but 1.0, 1.15 and 0.9 ms apart: what one process cannot see
    runs = [list(m * (1 + 0.005 * rng.standard_normal(50))) for m in (1.0, 1.15, 0.9)]
    others = [list(m * (1 + 0.005 * rng.standard_normal(50))) for m in (1.1, 0.95, 1.0)]
    lo, hi = bootstrap_ratio_ci(runs, others)
    one_lo, one_hi = bootstrap_ratio_ci(runs[0], others[0])  # one run a side: within-process only
    assert hi - lo > 5 * (one_hi - one_lo)
    assert lo < 1.0 < hi  # the same code: the interval holds 1
    assert bootstrap_ratio_ci([[1.0, 1.0]], [[1.0, 1.0, 1.0]]) is None  # too few samples to resample


def _as_harness(tmp_path, source, factor):
    """The tiny run as if another harness had timed it, `factor` times slower (a JSONL keeps its source)."""
    path = tmp_path / f"{source}.jsonl"
    lines = [json.loads(line) for line in open(_slower_copy(tmp_path, factor))]
    path.write_text("".join(json.dumps({**r, "source": source, "machine": "vm"}) + "\n" for r in lines))
    return str(path)


def test_compare_by_harness_puts_gradbench_first_whatever_the_input_order(tmp_path, capsys):
    other = _as_harness(tmp_path, "pytest-benchmark", 2.0)
    assert main(["compare", other, JSONL, "--by", "harness", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "baseline 'gradbench' vs 'pytest-benchmark'" in out and "pytest-benchmark / gradbench" in out
    table = pd.read_csv(tmp_path / "cmp" / "compare_by_harness.csv")
    assert not table.empty and ((table["time_ratio"] - 2.0).abs() < 1e-9).all()


def test_report_shows_harnesses_side_by_side_with_their_ratio(tmp_path):
    out = tmp_path / "report"
    assert main(["report", _as_harness(tmp_path, "pytest-benchmark", 1.25), JSONL, ASV_DIR, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## The same cases from several harnesses" in md
    section = md.split("## The same cases from several harnesses")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| mlp/tiny b8 cpu float32 forward")]
    by_pair = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        by_pair.setdefault(cells[2], []).append(cells)
    # a known disagreement is shown, not averaged away: every pytest-benchmark time is 1.25x gradbench's
    assert {c[5] for c in by_pair["pytest-benchmark / gradbench"]} == {"1.250"}
    # asv's --quick results rest on one sample each: compared, but marked as untrusted
    assert by_pair["asv / gradbench"] and {c[8] for c in by_pair["asv / gradbench"]} == {"NO"}


def test_report_of_one_harness_has_no_side_by_side_section(report_dir, tmp_path):
    out = tmp_path / "one"
    assert main(["report", JSONL, "--out", str(out)]) == 0
    assert "several harnesses" not in (out / "report.md").read_text()
    assert "## The same cases from several harnesses" in (report_dir / "report.md").read_text()


def test_ratio_tables_and_findings_never_mix_harnesses(tmp_path):
    """Another harness whose train alone is 3x slower must not change gradbench's ratios to train."""
    other = tmp_path / "other.jsonl"
    lines = [json.loads(line) for line in open(JSONL)]
    for r in lines:
        r["source"] = "pytest-benchmark"
        if r["mode"] == "train" and r["time_median_s"] is not None:
            r["time_median_s"] *= 3
            r["samples_s"] = [s * 3 for s in r["samples_s"]]
    other.write_text("".join(json.dumps(r) + "\n" for r in lines))

    def section(md, title):
        return md.split(title)[1].split("\n## ")[0]

    alone, both = tmp_path / "alone", tmp_path / "both"
    assert main(["report", JSONL, "--out", str(alone)]) == 0
    assert main(["report", str(other), JSONL, "--out", str(both)]) == 0
    md_alone, md_both = (alone / "report.md").read_text(), (both / "report.md").read_text()
    for title in ("## Each mode as a ratio to train", "## Findings"):
        assert section(md_alone, title) == section(md_both, title)
    assert "use the records of one harness, the first of gradbench, pytest-benchmark that measured it" in md_both


def _asv_commit(folder, commit, date_ms, train_factor):
    """The asv fixture's result file as if measured at another commit, its train forward slower."""
    import shutil

    if not os.path.exists(folder / "benchmarks.json"):
        shutil.copytree(ASV_DIR, folder)
    machine = folder / "vm-cpu"
    [fixture] = [p for p in sorted(machine.iterdir()) if p.name not in ("machine.json",)][:1]
    data = json.loads(fixture.read_text())
    data.update(commit_hash=commit, date=date_ms)
    for name, row in data["results"].items():
        if name.endswith("time_forward"):
            row[0][0] = row[0][0] * train_factor  # the first combination: train on cpu
    (machine / f"{commit[:8]}-virtualenv-py3.11.json").write_text(json.dumps(data))


def test_tables_use_the_newest_commit_and_commits_are_not_combined_as_repeats(tmp_path):
    """asv results span commits: the ratio tables describe the newest, never a median across commits."""
    newest_only, both = tmp_path / "newest-only", tmp_path / "both"
    _asv_commit(both, "f" * 40, 4102444800000, 3.0)  # 2100-01-01, train 3x slower
    _asv_commit(newest_only, "f" * 40, 4102444800000, 3.0)
    for p in newest_only.glob("vm-cpu/*.json"):
        if p.name != "machine.json" and not p.name.startswith("ffffffff"):
            p.unlink()
    assert len(list(both.glob("vm-cpu/*-virtualenv-*.json"))) == 2
    alone, mixed = tmp_path / "alone", tmp_path / "mixed"
    assert main(["report", str(newest_only), "--out", str(alone)]) == 0
    assert main(["report", str(both), "--out", str(mixed)]) == 0
    md_alone, md_mixed = (alone / "report.md").read_text(), (mixed / "report.md").read_text()
    ratios = "## Each mode as a ratio to train"
    assert md_alone.split(ratios)[1].split("\n## ")[0] == md_mixed.split(ratios)[1].split("\n## ")[0]
    assert "--repeat" not in md_mixed and "at its newest commit" in md_mixed


@pytest.mark.parametrize("kept", ["time_forward", "track_peak_bytes"])
def test_report_of_asv_results_narrowed_by_bench(tmp_path, kept):
    """`asv run --bench time_forward` stores no memory benchmarks (and the reverse): the report still draws."""
    import shutil

    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    for path in (folder / "vm-cpu").glob("*-virtualenv-*.json"):
        data = json.loads(path.read_text())
        data["results"] = {k: v for k, v in data["results"].items() if k.endswith(kept)}
        path.write_text(json.dumps(data))
    assert main(["report", str(folder), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.html").exists()


def test_compare_of_three_sides_names_the_pair_a_case_is_missing_from(tmp_path, capsys):
    asv_like = _as_harness(tmp_path, "asv", 1.0)
    partial = tmp_path / "partial.jsonl"
    lines = open(_as_harness(tmp_path, "pytest-benchmark", 1.0)).read().splitlines()
    partial.write_text("\n".join(line for line in lines if '"transformer"' not in line) + "\n")
    assert main(["compare", JSONL, asv_like, str(partial), "--by", "harness"]) == 0
    out = capsys.readouterr().out
    assert "cases on gradbench, not on pytest-benchmark; first: transformer/tiny" in out
    assert "only on" not in out and "not on asv" not in out  # asv has every case
