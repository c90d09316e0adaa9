"""Results files written by someone else (issue 24, safety and truth, round 3): what a record holds must
never choose where the report writes, put markup or formulas into what it writes, hang a reader, or pass
a gate that compared nothing. Each test here failed on the code before its fix (commit 77fdf44), but for
the two identity cases marked as refused already."""
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


# ---------------------------------------------------------------- 1. identity values reaching file names

@pytest.mark.parametrize("field, value", [
    ("dtype", TRAVERSAL), ("device", "cpu/../../../owned"), ("device", "cuda:"), ("device", "cuda:\u00b2"),
    ("compile", TRAVERSAL), ("autocast", TRAVERSAL),
    ("mode", TRAVERSAL), ("step", "forward\n"),  # refused already: modes and steps were checked
    ("size", "../owned"), ("size", "a/b"), ("size", "x" * 200), ("model", "mlp\x1b[2J"),
    ("model", "m.py:f\n<script>"), ("model", None), ("mode", None),
    ("size", None), ("batch_size", None), ("device", None), ("dtype", None), ("step", None),  # round 4: were read
])
def test_a_record_whose_identity_is_not_a_valid_value_is_skipped_with_one_warning(tmp_path, field, value):
    from gradbench.results import read_jsonl

    records = _records()
    records[0][field] = value
    records[3][field] = value
    records, warnings = read_jsonl(_write_jsonl(tmp_path / "crafted.jsonl", records))
    assert len(records) == len(_records()) - 2  # was: read as valid
    [warning] = warnings
    assert "crafted.jsonl:1: 2 record(s)" in warning and "(and lines 4)" in warning and field in warning


def test_user_model_names_and_sizes_of_a_real_run_are_still_read(tmp_path):
    from gradbench.results import read_jsonl

    records = _records()[:2]
    records[0].update(model="../zoo/my models.py:build_net", size="7b-fp8")
    records[1].update(model="pkg.sub:make", size="cuda:0")
    assert len(read_jsonl(_write_jsonl(tmp_path / "user.jsonl", records))[0]) == 2
    for size in ("../x", "a\\b", ".", ""):
        records[1]["size"] = size
        kept, [warning] = read_jsonl(_write_jsonl(tmp_path / "user.jsonl", records))
        assert len(kept) == 1 and "size" in warning, size


@pytest.mark.parametrize("size", ["../x", "a/b", "tab\there"])
def test_a_run_refuses_a_size_that_reading_would_skip(capsys, tmp_path, size):
    """What gradbench writes it reads back: a user model's size that is no plain name is refused up front."""
    code = main(["run", "--models", "user_models:two_linear", "--sizes", size, "--batch-sizes", "2", "--modes",
                 "eval", "--steps", "forward", "--no-report", "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad size" in err, err  # was: measured
    assert not (tmp_path / "r.jsonl").exists()


def test_a_crafted_jsonl_never_writes_outside_the_report_folder(tmp_path, capsys):
    crafted = [dict(r, dtype=TRAVERSAL) for r in _records()]
    err = _report_writes_only_into_out(tmp_path, capsys, [_write_jsonl(tmp_path / "crafted.jsonl", crafted)])
    assert f"all {len(crafted)} records in " in err and "skipped: line 1: dtype=" in err  # every record refused


def test_a_crafted_asv_folder_never_writes_outside_the_report_folder(tmp_path, capsys):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    [result] = [p for p in (folder / "vm-cpu").iterdir() if p.name != "machine.json"]
    text = result.read_text().replace("\"'cpu'\"", json.dumps(repr("cpu/../../../owned")))
    result.write_text(text)
    err = _report_writes_only_into_out(tmp_path, capsys, [str(folder), JSONL])
    assert "asv' skipped: record 1: " in err and "device='cpu/../../../owned'" in err  # every asv record refused


def test_a_crafted_pytest_benchmark_file_never_writes_outside_the_report_folder(tmp_path, capsys):
    data = json.load(open(PYTEST_JSON))
    for bench in data["benchmarks"]:
        bench["extra_info"]["dtype"] = TRAVERSAL
    crafted = tmp_path / "bench.json"
    crafted.write_text(json.dumps(data))
    err = _report_writes_only_into_out(tmp_path, capsys, [str(crafted), JSONL])
    assert "bench.json' skipped: record 1: " in err  # every record refused


def test_figure_names_are_slugs_inside_the_output_folder(tmp_path):
    """The second line of defence: whatever a name holds, the file lands in the folder it is written to."""
    from gradbench.report.files import output_path, slug

    assert slug("latency_vs_batch_cpu_float32") == "latency_vs_batch_cpu_float32"  # clean names unchanged
    for hostile in ("a/../../b", "..", ".hidden", "a\\b", "x\x00y", "\u202ertl", "p" * 400, ""):
        name = slug(hostile)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".") and len(name) <= 120
        assert name.isascii() and name.isprintable()
    assert slug("a/b") != slug("a_b")  # two values never share one file
    out = tmp_path / "figures"
    path = output_path(str(out), "latency_vs_batch_cpu_" + TRAVERSAL, "png")
    assert os.path.dirname(path) == str(out)


@pytest.mark.parametrize("hostile", [{"dtype": TRAVERSAL}, {"device": "cpu\x00"}])
def test_figures_of_records_that_skipped_reading_still_land_in_their_folder(tmp_path, hostile):
    """Records handed to the report by a notebook, unchecked: the file names hold them harmlessly."""
    from gradbench.report.figures import draw_all
    from gradbench.frame import to_frame

    records = [dict(r, source="gradbench", source_file="x", **hostile) for r in _records()]
    out = tmp_path / "out" / "figures"
    before = _files_under(tmp_path)
    paths = draw_all(to_frame(records), str(out))
    written = _files_under(tmp_path) - before
    assert written and all(os.path.dirname(p) == str(out) for p in written | set(paths))  # was: tmp_path/owned.png; a traceback


def test_a_symlink_in_the_output_folder_that_leads_outside_is_refused(tmp_path):
    from gradbench.errors import BadInput
    from gradbench.report.files import output_path

    out = tmp_path / "figures"
    out.mkdir()
    (out / "ratio_to_train.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(BadInput, match="outside"):
        output_path(str(out), "ratio_to_train", "png")


# ---------------------------------------------------------------- 2. markup in report.md

def test_report_md_escapes_markup_from_records_and_the_title(tmp_path):
    records = _records()
    failed = next(i for i, r in enumerate(records) if r["status"] == "error")
    records[failed]["error"] = "</table><script>alert(1)</script>"
    for r in records:
        r["machine"] = "<svg onload=alert(2)>"
        r["time_distrust"] = "[click](javascript:alert(3)) | cell"
        r["time_trusted"] = False if r["status"] == "ok" else None
    path = _write_jsonl(tmp_path / "markup.jsonl", records)
    out = tmp_path / "report"
    assert main(["report", path, "--out", str(out), "--title", "<img src=x onerror=alert(4)>"]) == 0
    md = (out / "report.md").read_text()
    for raw in ("<svg", "<script", "</table>", "<img", "](javascript:"):
        assert raw not in md, raw  # was: carried as is
    assert "&lt;svg onload=alert(2)&gt;" in md and "# &lt;img src=x onerror=alert(4)&gt;" in md
    assert "\\| cell" in md  # a bar from a record does not split a table row
    html = (out / "report.html").read_text()
    assert "<svg" not in html and "<script" not in html and "<img src=x" not in html


def test_markdown_tables_escape_their_cells():
    from gradbench.report.tables import render

    table = pd.DataFrame({"a": ["<b>x</b>", "1 | 2", "line\nbreak"]}, index=pd.Index(["<i>", "[l](u)", "ok"],
                                                                                      name="<u>"))
    md = render(table, "markdown")
    assert "<" not in md and "](" not in md and "line break" in md
    assert len(md.splitlines()) == 5 and all(line.count(" | ") == 1 for line in md.splitlines()[2:])


# ---------------------------------------------------------------- 3. formulas in compare's CSV

def test_compare_csv_neutralises_cells_a_spreadsheet_would_run(tmp_path, capsys):
    records = _records()
    a = [dict(r, machine="=HYPERLINK(\"http://x\")") for r in records]
    b = [dict(r, machine="+cmd|' /C calc'!A0") for r in records]
    for r in b:
        r.update(time_trusted=False, time_distrust="@SUM(1+1)*cmd|' /C calc'!A0")
    paths = [_write_jsonl(tmp_path / "a.jsonl", a), _write_jsonl(tmp_path / "b.jsonl", b)]
    assert main(["compare", *paths, "--by", "machine", "--out", str(tmp_path / "cmp")]) == 0
    capsys.readouterr()
    table = pd.read_csv(tmp_path / "cmp" / "compare_by_machine.csv")
    assert set(table["baseline"]) == {"'=HYPERLINK(\"http://x\")"}  # was: =HYPERLINK(...)
    assert set(table["other"]) == {"'+cmd|' /C calc'!A0"}
    for column in table.columns:
        assert not any(isinstance(v, str) and v[:1] in "=+-@\t\r" for v in table[column]), column
    # numbers stay numbers: one row per measured case, and both sides hold the same timings, so every ratio is 1
    assert len(table) == sum(r["status"] == "ok" for r in records)
    assert pd.api.types.is_float_dtype(table["time_ratio"]) and (table["time_ratio"] == 1.0).all()


def test_csv_cells_starting_with_a_formula_character_are_quoted_and_numbers_are_not():
    from gradbench.report.files import csv_safe

    table = pd.DataFrame({"text": ["=1+1", "-2", "@x", "\tx", "\rx", "+x", "plain", None],
                          "number": [-1.5, 2.0, -3.0, 0.0, 1.0, 1.0, 1.0, 1.0]})
    safe = csv_safe(table)
    assert safe["text"].tolist()[:-1] == ["'=1+1", "'-2", "'@x", "\\tx", "\\rx", "'+x", "plain"]  # tab, CR: escaped
    assert pd.isna(safe["text"].iloc[-1])
    assert safe["number"].tolist() == table["number"].tolist()


# ---------------------------------------------------------------- 4. inputs that are not regular files

def _gradbench(*argv, timeout=60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gradbench", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("where", ["input", "inside an asv folder"])
def test_a_named_pipe_as_input_is_refused_in_one_line(tmp_path, where):
    if where == "input":
        fifo = tmp_path / "results.jsonl"
        inputs = [str(fifo)]
    else:
        folder = tmp_path / "asv"
        shutil.copytree(ASV_DIR, folder)
        fifo = folder / "vm-cpu" / "zzz-pipe.json"
        inputs = [str(folder)]
    os.mkfifo(fifo)
    result = _gradbench("report", *inputs, "--out", str(tmp_path / "r"))  # was: hung for ever
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "is not a regular file" in lines[0] and str(fifo) in lines[0]


@pytest.mark.parametrize("argv", [["run", "--config", "{fifo}", "--no-report"], ["asv-machine", "--file", "{fifo}"]])
def test_a_named_pipe_as_any_other_input_file_is_refused(tmp_path, argv):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = _gradbench(*(a.format(fifo=fifo) for a in argv))  # was: hung for ever
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "is not a regular file" in lines[0], result.stderr


def test_a_device_file_as_input_is_refused(capsys):
    assert main(["compare", JSONL, "/dev/null", "--by", "machine"]) == 2
    err = capsys.readouterr().err
    assert "'/dev/null' is not a regular file" in err and len(err.strip().splitlines()) == 1


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


# ---------------------------------------------------------------- 6. a gate that compared nothing

def test_a_gate_with_no_case_in_common_fails_in_one_line(tmp_path, capsys):
    cpu = [r for r in _records() if r["model"] == "mlp"]
    other = [dict(r, device="cuda", machine="gpu-box") for r in _records() if r["model"] != "mlp"]
    paths = [_write_jsonl(tmp_path / "cpu.jsonl", cpu), _write_jsonl(tmp_path / "cuda.jsonl", other)]
    assert main(["compare", *paths, "--by", "device", "--fail-above", "10"]) == 1  # was: "OK", exit 0
    out = capsys.readouterr().out
    assert "OK" not in out
    [fail] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert "no case is on both sides" in fail
    only = [line for line in out.splitlines() if " only on " in line]
    assert len(only) == 2, out  # one line a side, however many cases: was one line per case
    ok = lambda records: sum(r["status"] == "ok" for r in records)  # noqa: E731
    assert only[0].startswith(f"{ok(cpu)} cases only on cpu; first: mlp/tiny")
    assert only[1].startswith(f"{ok(other)} cases only on cuda; first: ")
    assert main(["compare", *paths, "--by", "device"]) == 0  # without a gate, nothing to fail


# ---------------------------------------------------------------- found attacking the above

@pytest.mark.parametrize("fields", [{}, {"memory_budget_bytes": 2 ** 20}, {"capacity_batch_size": 8},
                                    {"memory_budget_bytes": 2 ** 20, "capacity_batch_size": 8, "held_bytes": None}])
def test_a_record_claiming_to_be_a_capacity_search_without_its_answer_is_no_traceback(tmp_path, capsys, fields):
    records = [dict(r, source="capacity", **fields) for r in _records() if r["status"] == "ok"]
    path = _write_jsonl(tmp_path / "capacity.jsonl", records + _records())
    assert main(["report", path, "--out", str(tmp_path / "r")]) == 0  # was: TypeError, or matplotlib's ValueError
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if "held_bytes" not in fields:
        assert "a capacity record without memory_budget_bytes and capacity_batch_size" in err


@pytest.mark.parametrize("date", [10 ** 20, 1e300, -(10 ** 18)])
def test_an_asv_result_dated_past_what_a_date_holds_is_one_line(tmp_path, capsys, date):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    [result] = [p for p in (folder / "vm-cpu").iterdir() if p.name != "machine.json"]
    result.write_text(result.read_text().replace('"date": 1795840409000', f'"date": {date!r}'))
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2  # was: OverflowError, or 'cannot read'
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not an asv result file: bad date" in err, err


def test_compare_prints_no_terminal_command_from_a_record(tmp_path, capsys):
    records = _records()
    a = [dict(r, machine="a\x1b]0;retitled\x07", time_trusted=True) for r in records]
    b = [dict(r, machine="b\x1b[31m", time_trusted=False, time_distrust="busy\x1b[2J\x9b2J",
              time_median_s=r["time_median_s"] and r["time_median_s"] * 3,
              samples_s=r["samples_s"] and [v * 3 for v in r["samples_s"]]) for r in records]
    paths = [_write_jsonl(tmp_path / "a.jsonl", a), _write_jsonl(tmp_path / "b.jsonl", b)]
    assert main(["compare", *paths, "--by", "machine", "--fail-above", "10"]) == 1  # every case untrusted
    out = capsys.readouterr().out
    assert "not judged" in out and "busy\\x1b[2J\\x9b2J" in out and "b\\x1b[31m / a\\x1b]0;retitled\\x07" in out
    assert not any(ch in out for ch in "\x1b\x07\x9b")  # was: the escapes themselves, run by the terminal


def test_report_md_carries_no_control_character_from_a_record(tmp_path):
    records = [dict(r, git_commit="\x1b]0;retitled\x07", machine="m\x1b[2J") for r in _records()]
    out = tmp_path / "report"
    assert main(["report", _write_jsonl(tmp_path / "c.jsonl", records), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "m\\\\x1b[2J" in md and not any(ch in md for ch in "\x1b\x07")  # was: the escapes, for cat to run


def test_a_figures_folder_that_leads_out_of_the_report_folder_is_refused(tmp_path, capsys):
    """A results file shipped beside a planted X-report/figures link: the default report folder is not the
    user's own choice, so its figures must not follow a link out of it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(JSONL, tmp_path / "run.jsonl")
    (tmp_path / "run-report").mkdir()
    (tmp_path / "run-report" / "figures").symlink_to(elsewhere)
    assert main(["report", str(tmp_path / "run.jsonl")]) == 2  # default --out: run-report/ beside it
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "leads to" in err and "outside" in err, err
    assert os.listdir(elsewhere) == []  # was: every figure written there


# ---------------------------------------------------------------- issue 24, round 4: found attacking the above

def test_compare_csv_has_no_bare_line_break_a_reader_could_start_a_formula_after(tmp_path, capsys):
    """A reader that breaks lines at a bare CR saw 'vm2\\r=cmd|...' as a row starting with the formula."""
    records = _records()
    a = [dict(r, machine="vm") for r in records]
    b = [dict(r, machine="vm2\r=cmd|' /C calc'!A0", error=r["error"] and "x\n@SUM(1)") for r in records]
    paths = [_write_jsonl(tmp_path / "a.jsonl", a), _write_jsonl(tmp_path / "b.jsonl", b)]
    assert main(["compare", *paths, "--by", "machine", "--out", str(tmp_path / "cmp")]) == 0
    capsys.readouterr()
    raw = (tmp_path / "cmp" / "compare_by_machine.csv").read_bytes()
    assert b"\r" not in raw  # was: the CR itself, unquoted
    for line in raw.decode().split("\n")[:-1]:
        for cell in line.split(","):  # every text field quoted: a formula never starts a field
            assert not cell[:1] in "=+-@", line
    table = pd.read_csv(tmp_path / "cmp" / "compare_by_machine.csv")
    assert set(table["other"]) == {"vm2\\r=cmd|' /C calc'!A0"}
    assert pd.api.types.is_float_dtype(table["time_ratio"])


def test_csv_text_cells_show_control_characters_escaped():
    from gradbench.report.files import csv_safe

    table = pd.DataFrame({"text": ["a\r=1", "\n=2", "\x00x", "b\x1b[2J"]})
    assert csv_safe(table)["text"].tolist() == ["a\\r=1", "\\n=2", "\\x00x", "b\\x1b[2J"]  # was: raw


def test_null_compile_and_autocast_still_mean_eager(tmp_path):
    from gradbench.results import read_jsonl

    records = [dict(r, compile=None, autocast=None) for r in _records()]
    kept, warnings = read_jsonl(_write_jsonl(tmp_path / "old.jsonl", records))
    assert len(kept) == len(records) and warnings == []


@pytest.mark.parametrize("field", ["size", "batch_size", "device", "dtype"])
def test_a_report_of_records_with_a_null_identity_field_is_no_traceback(tmp_path, capsys, field):
    records = [dict(r, **{field: None}) if r["model"] == "mlp" else r for r in _records()]
    out = tmp_path / "r"
    assert main(["report", _write_jsonl(tmp_path / "null.jsonl", records), "--out", str(out)]) == 0  # was: KeyError
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"first: {field} is null" in err
    assert len([line for line in err.splitlines() if line.startswith("gradbench: warning")]) == 1


def test_an_asv_benchmark_whose_param_names_repeat_a_name_is_refused_with_one_warning(tmp_path, capsys):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    benchmarks = json.loads((folder / "benchmarks.json").read_text())
    benchmarks["bench_modes.Forward.time_forward"]["param_names"] = ["model", "model", "batch_size", "device", "mode"]
    (folder / "benchmarks.json").write_text(json.dumps(benchmarks))
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 0  # was: KeyError 'size'
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [warning] = [line for line in err.splitlines() if line.startswith("gradbench: warning")]
    assert "bench_modes.Forward.time_forward" in warning and "'model'" in warning
    from gradbench.results import load

    df = load(str(folder), warn=lambda message: None)
    forward = df[df["step"] == "forward"]
    assert forward["time_median_s"].isna().all() and forward["peak_bytes"].notna().any()  # the others read


DEEP = "[" * 100000


@pytest.mark.parametrize("line", [DEEP, '{"a": ' * 100000 + "1" + "}" * 100000])
def test_a_deeply_nested_jsonl_line_is_a_malformed_line(tmp_path, line):
    from gradbench.results import read_jsonl

    path = tmp_path / "deep.jsonl"
    path.write_text(open(JSONL).read() + line + "\n" + open(JSONL).read().splitlines()[0] + "\n")
    records, warnings = read_jsonl(str(path))  # was: RecursionError
    assert len(records) == len(_records()) + 1 and warnings == [f"deep.jsonl:{len(_records()) + 1}: not a gradbench "
                                                                 "record, ignored"]


@pytest.mark.parametrize("where", ["pytest-benchmark", "asv result", "asv benchmarks.json"])
def test_a_deeply_nested_json_file_is_one_line(tmp_path, capsys, where):
    if where == "pytest-benchmark":
        target = tmp_path / "bench.json"
        target.write_text(DEEP)
        inputs = [str(target)]
    else:
        folder = tmp_path / "asv"
        shutil.copytree(ASV_DIR, folder)
        target = folder / "benchmarks.json" if where == "asv benchmarks.json" else next(
            p for p in (folder / "vm-cpu").iterdir() if p.name != "machine.json")
        target.write_text(DEEP)
        inputs = [str(folder)]
    assert main(["report", *inputs, "--out", str(tmp_path / "r")]) == 2  # was: RecursionError
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["-" * 200000 + "1", "9" * 5000, "(" * 999 + ")" * 999, "2**64", "[1]"])
def test_an_asv_parameter_value_that_is_no_short_literal_is_one_line(tmp_path, capsys, value):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    [result] = [p for p in (folder / "vm-cpu").iterdir() if p.name != "machine.json"]
    result.write_text(result.read_text().replace('["8"]', json.dumps([value])))
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2  # was: MemoryError, for the first
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "is not an asv result file: parameter value" in err and len(err) < 400, err


TERMINAL_COMMANDS = "\x1b\x07\x9b"


def test_compare_prints_a_side_with_cases_of_its_own_escaped(tmp_path, capsys):
    records = _records()
    a = [dict(r, machine="a\x1b]0;PWNED\x07") for r in records]
    b = [dict(r, machine="b\x9b2J") for r in records if r["model"] != "mlp"]
    paths = [_write_jsonl(tmp_path / "a.jsonl", a), _write_jsonl(tmp_path / "b.jsonl", b)]
    assert main(["compare", *paths, "--by", "machine"]) == 0
    out = capsys.readouterr().out
    assert "cases only on a\\x1b]0;PWNED\\x07; first: mlp/tiny" in out
    assert not any(ch in out for ch in TERMINAL_COMMANDS)  # was: the side's name raw


def test_reading_warnings_name_a_results_file_escaped(tmp_path, capsys):
    records = _records()
    records[0]["time_median_s"] = "fast"
    path = _write_jsonl(tmp_path / "x\x1b]0;PWNED\x07.jsonl", records)
    assert main(["report", path, "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert "x\\x1b]0;PWNED\\x07.jsonl:1: 1 record(s)" in captured.err
    assert not any(ch in captured.err + captured.out for ch in TERMINAL_COMMANDS)  # was: the file name raw


def test_an_error_line_shows_control_characters_escaped(tmp_path, capsys):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    benchmarks = json.loads((folder / "benchmarks.json").read_text())
    benchmarks["bench_modes.Forward.time_forward"]["param_names"] = ["model", "size", "batch_size", "device",
                                                                     "\x1b]0;PWNED\x07"]
    (folder / "benchmarks.json").write_text(json.dumps(benchmarks))
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and not any(ch in err for ch in TERMINAL_COMMANDS), err


@pytest.fixture
def drawn_texts(monkeypatch):
    """Every text matplotlib draws (titles, legends, tick and facet labels), as it was given to it."""
    import matplotlib.text

    drawn: list[str] = []
    draw = matplotlib.text.Text.draw

    def spy(self, renderer):
        drawn.append(self.get_text())
        return draw(self, renderer)

    monkeypatch.setattr(matplotlib.text.Text, "draw", spy)
    return drawn


HOSTILE_NAMES = ["a\x1b]0;PWNED\x07" + "m" * 5000, "b\r$\\nocommand$\u202e"]


def _clean_and_short(drawn: list[str]) -> None:
    import re

    assert drawn
    assert not [t for t in drawn if re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", t)]
    assert max(len(t) for t in drawn) < 200


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_compare_figure_draws_long_and_hostile_machine_names_shortened_and_escaped(tmp_path, capsys, drawn_texts,
                                                                                    name):
    paths = [_write_jsonl(tmp_path / f"{i}.jsonl", [dict(r, machine=machine) for r in _records()])
             for i, machine in enumerate(["vm", name])]
    code = main(["compare", *paths, "--by", "machine", "--out", str(tmp_path / "cmp")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err  # was: 'left cannot be >= right', exit 1;
    assert (tmp_path / "cmp" / "compare_by_machine.png").exists()       # or mathtext's ValueError on '$\\x$'
    _clean_and_short(drawn_texts)  # was: the control characters, and 5000 characters, given to matplotlib


def test_report_figures_draw_hostile_asv_machine_names_shortened_and_escaped(tmp_path, capsys, drawn_texts):
    folder = tmp_path / "asv"
    shutil.copytree(ASV_DIR, folder)
    [result] = [p for p in (folder / "vm-cpu").iterdir() if p.name != "machine.json"]
    result.write_text(result.read_text().replace('"machine": "vm-cpu"', '"machine": ' + json.dumps(HOSTILE_NAMES[1]
                                                                                                    + "x" * 5000)))
    code = main(["report", str(folder), "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err  # was: mathtext's ValueError
    _clean_and_short(drawn_texts)


def test_figure_text_is_short_escaped_and_keeps_two_names_two():
    from gradbench.report.figures import figure_text

    assert figure_text("vm-cpu") == "vm-cpu"
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    assert len(figure_text(long_a)) == 60 and figure_text(long_a) != figure_text(long_b)
    assert figure_text("a\x1b$b$") == "a\\x1b\\$b\\$"


@pytest.mark.parametrize("fields, problem", [
    ({"time_median_s": 0.0}, "time_median_s=0.0 is not above 0"),
    ({"time_median_s": -0.001}, "time_median_s=-0.001 is not above 0"),
    ({"samples_s": [0.001, -0.5, 0.002]}, "samples_s holds -0.5, below 0"),
])
def test_a_timing_at_or_below_zero_is_skipped_with_one_warning(tmp_path, fields, problem):
    from gradbench.results import read_any

    records = _records()
    ok = next(i for i, r in enumerate(records) if r["status"] == "ok")
    records[ok].update(fields)
    kept, warnings = read_any(_write_jsonl(tmp_path / "zero.jsonl", records))
    assert len(kept) == len(records) - 1  # was: read, and a ratio or rate divided by it
    [warning] = warnings
    assert problem in warning


def test_a_capacity_record_timed_at_zero_is_skipped_and_never_divided_by(tmp_path, capsys):
    from gradbench.report.capacity import capacity_rows
    from gradbench.frame import to_frame

    records = [dict(r, source="capacity", memory_budget_bytes=2 ** 30, capacity_batch_size=r["batch_size"],
                    time_median_s=0.0) for r in _records() if r["status"] == "ok"]
    path = _write_jsonl(tmp_path / "capacity.jsonl", records + _records())
    assert main(["report", path, "--out", str(tmp_path / "r")]) == 0  # was: ZeroDivisionError
    err = capsys.readouterr().err
    assert "Traceback" not in err and "time_median_s=0.0 is not above 0" in err
    rows = capacity_rows(to_frame(records[:1]))  # one that did not come through reading
    assert rows[0]["samples_per_s"] is None


MARKED = "*bold* _em_ `code` ~~gone~~ <https://evil.example/x> \u202eevil\u2066 eval_no_grad"


def test_report_md_shows_emphasis_code_autolinks_and_bidi_from_records_as_text(tmp_path):
    from gradbench.report.tables import markdown_text

    assert markdown_text(MARKED) == ("\\*bold\\* \\_em\\_ \\`code\\` \\~\\~gone\\~\\~ &lt;https://evil.example/x&gt; "
                                     "\\\\u202eevil\\\\u2066 eval_no_grad")  # was: '*bold* _em_ `code` ~~gone~~'
    records = [dict(r, machine=MARKED, time_trusted=False, time_distrust=MARKED) for r in _records()]
    out = tmp_path / "report"
    assert main(["report", _write_jsonl(tmp_path / "m.jsonl", records), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "*bold*" not in md and "`code`" not in md and "<https:" not in md and "\u202e" not in md
    assert "\\*bold\\*" in md


def test_report_html_shows_control_characters_from_records_escaped(tmp_path):
    records = [dict(r, machine="m\x1b[2J\u202e", time_trusted=False, time_distrust="why\x07\r") for r in _records()]
    out = tmp_path / "report"
    assert main(["report", _write_jsonl(tmp_path / "c.jsonl", records), "--out", str(out), "--title", "t\x1b]0;x"]) == 0
    page = (out / "report.html").read_text()
    assert not [ch for ch in "\x1b\x07\r\u202e" if ch in page]  # was: carried raw into the page
    assert "m\\x1b[2J\\u202e" in page and "why\\x07\\r" in page and "t\\x1b]0;x" in page


@pytest.mark.parametrize("default", [True, False])
def test_a_report_folder_that_is_a_link_out_is_refused_in_one_line(tmp_path, capsys, default):
    """A results file shipped beside a planted X-report link (the default folder), or an --out that is one."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(JSONL, tmp_path / "run.jsonl")
    (tmp_path / "run-report").symlink_to(elsewhere)
    out = [] if default else ["--out", str(tmp_path / "run-report") + os.sep]
    assert main(["report", str(tmp_path / "run.jsonl"), *out]) == 2  # was: 0, report and figures written there
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a link to" in err and "Traceback" not in err, err
    assert os.listdir(elsewhere) == []


def test_a_compare_out_folder_that_is_a_link_out_is_refused_in_one_line(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "cmp").symlink_to(elsewhere)
    paths = [_write_jsonl(tmp_path / f"{m}.jsonl", [dict(r, machine=m) for r in _records()]) for m in ("a", "b")]
    assert main(["compare", *paths, "--by", "machine", "--out", str(tmp_path / "cmp")]) == 2  # was: 0
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "is a link to" in captured.err, captured.err
    assert captured.out == "" and os.listdir(elsewhere) == []




@pytest.mark.parametrize("name, sibling", [("res[1]", None), ("[!x]", None), ("a*b", "aXb"), ("what?", "whatX")])
def test_an_asv_folder_whose_name_holds_glob_characters_is_read_as_named(tmp_path, name, sibling):
    """A name is not a pattern: 'res[1]' matched no folder, 'a*b' matched its sibling 'aXb' too."""
    from gradbench.results import read_any

    expected = len(read_any(ASV_DIR)[0])
    shutil.copytree(ASV_DIR, tmp_path / name)  # the results folder so named
    shutil.copytree(ASV_DIR, tmp_path / "top")
    for machine in (name, sibling):  # machines' folders so named
        if machine:
            shutil.copytree(tmp_path / "top" / "vm-cpu", tmp_path / "top" / machine)
    shutil.rmtree(tmp_path / "top" / "vm-cpu")
    for folder, machines in ((tmp_path / name, 1), (tmp_path / "top", 2 if sibling else 1),
                             (tmp_path / "top" / name, 1)):
        assert len(read_any(str(folder))[0]) == machines * expected, folder  # was: not an asv folder, or too many


def test_a_gate_whose_every_shared_case_is_untrusted_fails_in_one_line(tmp_path, capsys):
    paths = [_write_jsonl(tmp_path / f"{m}.jsonl", [dict(r, machine=m, time_trusted=False, time_distrust="contended")
                                                      for r in _records()]) for m in ("a", "b")]
    assert main(["compare", *paths, "--by", "machine", "--fail-above", "10"]) == 1  # was: "OK", exit 0
    out = capsys.readouterr().out
    assert "OK" not in out
    [fail] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fail.startswith("FAIL: nothing judged: all ") and "untrusted" in fail
    for m in ("a", "b"):  # one case trusted on both sides: judged
        _write_jsonl(tmp_path / f"{m}.jsonl", [dict(r, machine=m) if r["model"] == "mlp" else
                                               dict(r, machine=m, time_trusted=False) for r in _records()])
    assert main(["compare", *paths, "--by", "machine", "--fail-above", "10"]) == 0


@pytest.mark.parametrize("kind", ["jsonl", "asv"])
def test_an_input_whose_every_record_is_skipped_says_so_in_one_line(tmp_path, capsys, kind):
    good = _write_jsonl(tmp_path / "good.jsonl", [dict(r, machine="a") for r in _records()])
    if kind == "jsonl":
        bad = _write_jsonl(tmp_path / "bad.jsonl", [dict(r, machine="b", device="cpu/../x") for r in _records()])
        count, first = len(_records()), "line 1: device='cpu/../x' is not"
    else:
        bad = str(tmp_path / "asv")
        shutil.copytree(ASV_DIR, bad)
        [result] = [p for p in (tmp_path / "asv" / "vm-cpu").iterdir() if p.name != "machine.json"]
        result.write_text(result.read_text().replace("\"'tiny'\"", "\"'../x'\""))
        count, first = "", "record 1: size='../x' is not"
    assert main(["compare", good, bad, "--by", "machine", "--fail-above", "10"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()  # was: a warning, then "--by machine needs inputs that differ"
    assert f"all {count}" in line and f"records in {bad!r} skipped: {first}" in line, line
    assert "Traceback" not in captured.err and captured.out == ""
