"""Faults a new user meets (issue 11): each gets one line and the right exit status (2 for bad input,
1 for an output that cannot be written), and nothing run twice or lost.

Each test here failed on gradbench 0.3's first cut (commit 324841f) in the way its comment says.
"""
import json
import os

import pytest

import gradbench
from gradbench.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
JSONL = os.path.join(FIXTURES, "results", "tiny.jsonl")
SLEEPS = f"{os.path.join(FIXTURES, 'user_models.py')}:sleeps"  # its forward sleeps a minute
TINY = ["--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "--steps", "forward",
        "--no-report"]


def refused(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("gradbench: error: "), err
    return lines[0]


@pytest.mark.parametrize("body, message", [
    ('resume = "no"', "bad 'resume' in --config"),           # was: a truthy string, so it resumed
    ('no_report = "false"', "bad 'no_report' in --config"),  # was: skipped the report
    ('quick = 1', "bad 'quick' in --config"),
    ("threads = 1.9", "bad --threads 1.9; expected an integer"),  # was: 1
    ("seed = true", "bad --seed True; expected an integer"),      # was: 1
    ("run = 5", "expected a table of settings"),                  # was: a traceback
    ('out = ["a.jsonl"]', "bad 'out' in --config"),                # was: a traceback
    ('models = [["mlp"]]', "bad value for 'models'"),
])
def test_config_values_of_the_wrong_type_are_refused(capsys, tmp_path, body, message):
    config = tmp_path / "c.toml"
    config.write_text(body + "\n")
    out = tmp_path / "out.jsonl"
    assert message in refused(capsys, ["run", "--config", str(config), "--out", str(out)])
    assert not out.exists()


def test_a_config_file_that_is_not_utf8_is_refused(capsys, tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('models = ["m\xe9lp"]\n'.encode("latin-1"))  # was: UnicodeDecodeError traceback
    assert "malformed --config" in refused(capsys, ["run", "--config", str(config)])


@pytest.mark.parametrize("args, message", [
    (["--seed", str(2 ** 64)], "bad --seed 18446744073709551616; it must be <="),  # was: every case an error
    (["--seed", str(-(2 ** 63) - 1)], "it must be >="),
    (["--threads", "1000000"], "bad --threads 1000000; it must be <= 4096"),     # was: crashed workers
    (["--max-time", "inf"], "bad --max-time inf; expected a finite number"),      # was: a traceback
    (["--devices", "cpu:1"], "unknown device 'cpu:1'"),                           # was: accepted
])
def test_numbers_and_devices_out_of_range_are_refused(capsys, tmp_path, args, message):
    out = tmp_path / "out.jsonl"
    assert message in refused(capsys, ["run", *TINY, *args, "--out", str(out)])
    assert not out.exists()


def test_a_value_repeated_in_a_list_runs_once(tmp_path):
    from gradbench.cli import build_parser
    from gradbench.settings import run_settings

    args = build_parser().parse_args(["run", "--models", "mlp", "mlp,cnn", "--batch-sizes", "8", "08", "8"])
    grid = run_settings(args).grid  # was: the same cases twice
    assert grid.models == ("mlp", "cnn") and grid.batch_sizes == (8,)


def test_explain_with_no_models_is_refused(capsys):
    assert "--models is empty" in refused(capsys, ["explain", "--models", ""])  # was: the defaults, silently


def test_a_file_named_twice_is_read_once():
    once = gradbench.load([JSONL])
    twice = gradbench.load([JSONL, os.path.join(FIXTURES, "results", ".", "tiny.jsonl")])  # was: doubled
    assert len(twice) == len(once)


def test_compare_out_naming_a_file_is_refused(capsys, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(dict(json.loads(line), machine="box2")) + "\n" for line in open(JSONL)))
    existing = tmp_path / "table.csv"
    existing.write_text("keep me\n")
    line = refused(capsys, ["compare", JSONL, str(other), "--by", "machine", "--out", str(existing)])
    assert "is a file" in line and existing.read_text() == "keep me\n"  # was: NotADirectoryError traceback


def test_a_second_run_on_the_same_results_file_is_refused_naming_the_first(capsys, tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "shared.jsonl"
    erratic = f"{os.path.join(FIXTURES, 'user_models.py')}:erratic"
    args = ["run", "--models", erratic, "--sizes", "default", "--batch-sizes", "2", "--modes", "eval",
            "eval_no_grad", "--steps", "forward", "--max-time", "0.5", "--no-report", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "gradbench.cli", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not out.exists() and time.time() < deadline:  # created when the first run locks it
            time.sleep(0.05)
        time.sleep(0.5)
        line = refused(capsys, [*args, "--resume"])  # was: both runs measured every case
        assert "being written by another gradbench run" in line and f"pid {first.pid}" in line
    finally:
        assert first.wait(timeout=120) == 0
    records = [json.loads(line) for line in open(out)]
    assert sorted(r["mode"] for r in records) == ["eval", "eval_no_grad"]  # each case once
    _lock_is_free(out)  # released when the run ended


@pytest.mark.parametrize("option, value, recorded", [
    ("--seed", "1", "seed 0"), ("--threads", "1", "threads 2"),
    ("--max-time", "0.3", "max_time_s 0.5"),  # was: resumed, two time caps mixed in one file
])
def test_resume_with_other_settings_is_refused(capsys, tmp_path, option, value, recorded):
    out = tmp_path / "run.jsonl"
    first = dict(json.loads(next(line for line in open(JSONL) if '"status": "ok"' in line)), seed=0, threads=2,
                 max_time_s=0.5)
    out.write_text(json.dumps(first) + "\n")
    before = out.read_bytes()
    base = ["run", *TINY, "--out", str(out), "--resume", "--seed", "0", "--threads", "2", "--max-time", "0.5"]
    line = refused(capsys, [*base, option, value])  # was: "0 cases to run", two experiments mixed in one file
    assert f"with {option} {value}" in line and recorded in line
    assert out.read_bytes() == before


# ---------------------------------------------------------------- numbers on the other commands


@pytest.mark.parametrize("argv", [
    ["explain", "--max-time", "inf"],  # was: timed forever
    ["case", "--max-time", "nan"],
    ["case", "--batch-size", "0"],
    ["selfcheck", "--tolerance", "nan"],
])
def test_non_finite_or_out_of_range_numbers_on_other_commands_are_refused(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


# ---------------------------------------------------------------- write errors


def _limited(max_bytes: int):
    """A child's file size limit: a write past it fails with EFBIG, as a full disk fails with ENOSPC
    (a short write first, then an error), on any filesystem and without root."""
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def _gradbench(args, max_bytes=None, timeout=300):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gradbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limited(max_bytes) if max_bytes else None)


def _one_error_line(result, code: int) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("gradbench: error")]
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_results_that_cannot_be_written_stop_the_run_with_no_partial_line(tmp_path):
    out = tmp_path / "full.jsonl"
    args = ["run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "eval_no_grad",
            "no_grad", "train", "--steps", "forward", "--max-time", "0.02", "--no-report", "--out", str(out)]
    result = _gradbench(args, max_bytes=6000)  # room for a record or two of the four
    line = _one_error_line(result, 1)  # was: a traceback, and a partial line left in the file
    assert f"cannot write results to {str(out)!r}" in line and "--resume" in line
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and 1 <= len(lines) - 1 < 4
    records = [json.loads(x) for x in lines[:-1]]  # every line whole
    assert all(r["status"] == "ok" for r in records)
    assert f"the {len(records)} records this run wrote before it are intact" in line
    _lock_is_free(out)


def test_capacity_results_that_cannot_be_written_advise_no_option_capacity_lacks(tmp_path):
    out = tmp_path / "full.jsonl"
    args = ["capacity", "--models", "mlp", "--sizes", "tiny", "--modes", "eval_no_grad", "--memory-budget", "1MiB",
            "--out", str(out)]
    line = _one_error_line(_gradbench(args, max_bytes=3000), 1)
    assert f"cannot write results to {str(out)!r}" in line and "search again" in line
    assert "--resume" not in line.replace("has no --resume", "")  # was: 'continue with --out ... --resume'
    assert out.read_bytes().endswith(b"\n") or out.read_bytes() == b""


def test_a_report_that_cannot_be_written_leaves_no_half_written_file(tmp_path):
    out = tmp_path / "report"
    result = _gradbench(["report", JSONL, "--out", str(out)], max_bytes=30_000)  # smaller than the figures
    line = _one_error_line(result, 1)  # was: a traceback
    assert "cannot write figure" in line and "File too large" in line
    assert not os.path.exists(out / "report.html") and not os.path.exists(out / "report.md")
    assert [f for f in os.listdir(out / "figures") if ".tmp" in f] == []  # temporaries removed
    for name in os.listdir(out / "figures"):  # what was written is whole: a PNG ends with its IEND chunk
        data = (out / "figures" / name).read_bytes()
        assert data.endswith(b"IEND\xaeB`\x82") if name.endswith(".png") else data.rstrip().endswith(b"</svg>")


def test_asv_machine_on_a_full_disk_keeps_the_old_file_whole(tmp_path):
    machine_file = tmp_path / "asv-machine.json"
    old = {"version": 1, "other-host": {"machine": "other-host", "notes": "x" * 2000}}
    machine_file.write_text(json.dumps(old, indent=4))
    size = machine_file.stat().st_size
    result = _gradbench(["asv-machine", "--file", str(machine_file), "--machine", "new-host"], max_bytes=size + 20)
    line = _one_error_line(result, 1)  # was: the file truncated to what fitted: invalid JSON, old machine lost
    assert "cannot write asv machine file" in line
    assert json.loads(machine_file.read_text()) == old
    assert [f for f in os.listdir(tmp_path) if ".tmp" in f] == []


def test_asv_machine_with_room_writes_the_new_machine_beside_the_old(tmp_path, capsys):
    machine_file = tmp_path / "asv-machine.json"
    machine_file.write_text(json.dumps({"version": 1, "other-host": {"machine": "other-host"}}))
    assert main(["asv-machine", "--file", str(machine_file), "--machine", "new-host"]) == 0
    data = json.loads(machine_file.read_text())
    assert set(data) == {"version", "other-host", "new-host"} and data["new-host"]["machine"] == "new-host"


# ---------------------------------------------------------------- user modules misbehaving at import


@pytest.fixture
def misbehaving(tmp_path):
    def module(body: str) -> str:
        path = tmp_path / f"m{abs(hash(body))}.py"
        path.write_text("import torch\nfrom torch import nn\n" + body + "\n\ndef build(size='default'):\n"
                        "    return nn.Linear(4, 4), lambda b: torch.randn(b, 4)\n")
        return f"{path}:build"
    return module


def _sweep_with(model: str, tmp_path, *extra) -> tuple[int, list[dict]]:
    out = tmp_path / "out.jsonl"
    code = main(["run", "--models", model, "mlp", "--sizes", "tiny", "--batch-sizes", "2", "3", "--modes", "eval",
                 "--steps", "forward", "--max-time", "0.02", "--no-report", "--out", str(out), *extra])
    return code, [json.loads(line) for line in open(out)]


@pytest.mark.parametrize("body, status, message", [
    ("import sys\nsys.exit(0)", "error", "its module called sys.exit(0) at import"),  # was: gradbench ended, 0
    ("import os\nos._exit(3)", "crashed", "ended its worker process (exit code 3)"),
    ("raise ImportError('no such thing')", "error", "ImportError: no such thing"),  # was: exit 2, nothing run
])
def test_a_user_module_that_exits_or_crashes_at_import_becomes_records(tmp_path, misbehaving, body, status,
                                                                        message):
    model = misbehaving(body)
    code, records = _sweep_with(model, tmp_path)
    assert code == 0
    theirs = [r for r in records if r["model"] == model]
    assert len(theirs) == 2 and all(r["status"] == status and message in r["error"] for r in theirs)
    assert [r["status"] for r in records if r["model"] == "mlp"] == ["ok", "ok"]  # the sweep went on


def test_a_user_module_that_hangs_at_import_times_out_once_for_all_its_cases(tmp_path, misbehaving):
    imports = tmp_path / "imports"
    model = misbehaving(f"open({str(imports)!r}, 'a').write('x')\nimport time\ntime.sleep(600)")
    # a timeout the other model's cases meet even on a loaded 2-core machine (a fresh worker there: 3-5 s)
    code, records = _sweep_with(model, tmp_path, "--timeout", "15")  # was: hung forever, --timeout ignored
    assert code == 0
    theirs = [r for r in records if r["model"] == model]
    assert len(theirs) == 2 and all(r["status"] == "timeout" and "importing model" in r["error"] for r in theirs)
    assert [r["status"] for r in records if r["model"] == "mlp"] == ["ok", "ok"]
    assert imports.read_text() == "x"  # imported (and timed out) once for both batch sizes, not once each


@pytest.mark.parametrize("function, where, message", [
    ("interrupts", "in forward", "stop after the first batch"),
    ("interrupts_in_factory", "in interrupts_in_factory", "no model today"),
])
def test_a_keyboardinterrupt_a_model_raises_is_an_error_and_the_sweep_goes_on(tmp_path, function, where, message):
    model = f"{os.path.join(os.path.dirname(__file__), 'fixtures', 'user_models.py')}:{function}"
    code, records = _sweep_with(model, tmp_path)
    assert code == 0
    theirs = [r for r in records if r["model"] == model]
    assert len(theirs) == 2 and all(r["status"] == "error" for r in theirs), theirs  # was: crashed, a worker died
    assert all(r["error"].startswith("KeyboardInterrupt raised inside the model's code") and where in r["error"]
               and message in r["error"] for r in theirs), theirs[0]["error"]
    assert [r["status"] for r in records if r["model"] == "mlp"] == ["ok", "ok"]


def test_run_case_records_a_keyboardinterrupt_the_model_raised():
    try:
        r = gradbench.run_case(model="user_models:interrupts", size="x", batch_size=2, mode="eval", max_time_s=0.02)
    except KeyboardInterrupt:
        pytest.fail("the model's own KeyboardInterrupt escaped run_case as if the user had pressed Ctrl-C")
    assert r["status"] == "error" and r["error"].startswith("KeyboardInterrupt raised inside the model's code")


def test_a_real_ctrl_c_while_a_model_runs_still_stops_run_case():
    import signal

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        gradbench.run_case(model="user_models:signals_itself", size="x", batch_size=2, mode="eval", max_time_s=0.02)
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.mark.parametrize("function, message", [
    ("exits", "SystemExit raised inside the model's code (sys.exit(3)), not by a signal (in forward"),
    ("exits_in_make_input", "SystemExit raised inside the model's code (sys.exit('no batch today'))"),
])
def test_run_case_records_a_sys_exit_in_the_models_code(function, message):
    try:
        r = gradbench.run_case(model=f"user_models:{function}", size="x", batch_size=2, mode="eval",
                               max_time_s=0.02)
    except SystemExit:
        pytest.fail("the model's sys.exit() escaped run_case and would have ended the measuring process")
    assert r["status"] == "error" and r["error"].startswith(message), r["error"]


def test_a_sys_exit_in_a_models_forward_is_an_error_and_the_sweep_goes_on(tmp_path):
    model = f"{os.path.join(os.path.dirname(__file__), 'fixtures', 'user_models.py')}:exits"
    code, records = _sweep_with(model, tmp_path)
    assert code == 0
    theirs = [r for r in records if r["model"] == model]
    assert len(theirs) == 2 and all(r["status"] == "error" and "sys.exit(3)" in r["error"] for r in theirs), theirs
    assert [r["status"] for r in records if r["model"] == "mlp"] == ["ok", "ok"]


def test_a_real_sigterm_while_a_model_runs_still_stops_run_case():
    import signal

    from gradbench.runner import Terminated, _terminated_as_exit

    with _terminated_as_exit():  # the runner's own handler: SIGTERM raises Terminated, a SystemExit
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Terminated):
            gradbench.run_case(model="user_models:terminates_itself", size="x", batch_size=2, mode="eval",
                               max_time_s=0.02)
        assert signal.getsignal(signal.SIGTERM) is handler


def test_a_real_ctrl_c_stops_a_sweep_while_a_model_runs(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out, sleeping = tmp_path / "int.jsonl", tmp_path / "sleeping"
    run = subprocess.Popen([sys.executable, "-m", "gradbench.cli", "run", "--models", "mlp",
                            f"{os.path.join(os.path.dirname(__file__), 'fixtures', 'user_models.py')}:sleeps",
                            "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "--steps", "forward",
                            "--max-time", "0.05", "--no-report", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "GRADBENCH_TEST_SLEEPING": str(sleeping)})
    deadline = time.time() + 120
    while not sleeping.exists() and time.time() < deadline:  # the worker is inside the sleeping model's forward
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130
    assert "gradbench: interrupted" in run.stderr.read()
    assert [json.loads(line)["model"] for line in out.read_text().splitlines()] == ["mlp"]


def test_explain_on_a_module_that_exits_at_import_is_one_line(capsys, misbehaving):
    assert main(["explain", "--models", misbehaving("raise SystemExit(4)"), "--max-time", "0.02"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("gradbench: error")]
    assert len(errors) == 1 and "called sys.exit(4) at import" in errors[0]  # was: gradbench exited 4, silently
    assert "Traceback" not in err


# ---------------------------------------------------------------- merging and reading


def test_an_empty_shard_is_a_valid_empty_result(tmp_path, capsys):
    empty = tmp_path / "shard-2.jsonl"
    assert main(["run", *TINY, "--shard", "2/2", "--out", str(empty)]) == 0
    assert empty.exists() and empty.stat().st_size == 0
    capsys.readouterr()
    assert main(["report", JSONL, str(empty), "--out", str(tmp_path / "r")]) == 0  # was: "is empty", exit 2
    assert "gradbench: error" not in capsys.readouterr().err
    line = refused(capsys, ["report", str(empty), "--out", str(tmp_path / "r2")])  # nothing at all to report
    assert "no records in" in line


def test_records_with_wrong_typed_fields_are_skipped_with_one_warning(tmp_path, capsys):
    lines = open(JSONL).read().splitlines()
    spoiled = [json.loads(line) for line in lines]
    spoiled[2]["time_median_s"] = "fast"
    spoiled[5]["batch_size"] = "8"
    spoiled[6]["dropout_active"] = [1]
    path = tmp_path / "spoiled.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in spoiled) + "\n")
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0  # was: a traceback
    warnings = [w for w in capsys.readouterr().err.splitlines() if "wrong-typed" in w]
    assert warnings == ["gradbench: warning: spoiled.jsonl:3: 3 record(s) with wrong-typed fields skipped "
                        "(and lines 6, 7); first: time_median_s='fast' is not float"]
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(json.dumps(dict(r, machine="other")) for r in spoiled) + "\n")
    assert main(["compare", str(path), str(other), "--by", "machine"]) == 0
    assert sum("wrong-typed" in w for w in capsys.readouterr().err.splitlines()) == 2  # one per file


def test_a_bare_nan_from_another_tool_is_read_as_null_and_never_written(tmp_path):
    from gradbench.results import read_jsonl
    from gradbench.storage import JsonlWriter

    record = json.loads(next(line for line in open(JSONL) if '"status": "ok"' in line))
    path = tmp_path / "nan.jsonl"
    path.write_text(json.dumps(dict(record, flops_per_s=None)).replace('"flops_per_s": null',
                                                                        '"flops_per_s": Infinity') + "\n")
    records, warnings = read_jsonl(path)
    assert records[0]["flops_per_s"] is None and not warnings
    written = tmp_path / "written.jsonl"
    with JsonlWriter(written) as writer:
        writer.write(dict(record, flops_per_s=float("nan"), samples_s=[1e-3, float("inf")]))

    def refuse(name):
        raise ValueError(f"bare {name} in JSONL")
    again = json.loads(written.read_text(), parse_constant=refuse)  # strict JSON: no NaN, no Infinity
    assert again["flops_per_s"] is None and again["samples_s"] == [1e-3, None]


# ---------------------------------------------------------------- found by the review of the above


def _lock_is_free(path) -> None:
    from gradbench.storage import ResultsLock

    ResultsLock(path).release()  # raises ResultsLocked while any process holds it


def test_the_lock_holds_by_any_name_of_the_file(tmp_path):
    from gradbench.storage import ResultsLock, ResultsLocked

    out = tmp_path / "shared.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(out)
    with ResultsLock(out):
        hard = tmp_path / "hard.jsonl"
        os.link(out, hard)
        for other in (link, hard, tmp_path / "." / "shared.jsonl"):  # was: a symlink or hard link took a second lock
            with pytest.raises(ResultsLocked, match=f"being written by another gradbench run \\(pid {os.getpid()}\\)"):
                ResultsLock(other)
    _lock_is_free(hard)


@pytest.mark.parametrize("seed, ok", [(2 ** 63 - 2, True), (2 ** 63 - 1, False), (2 ** 64 - 1, False)])
def test_the_largest_seed_is_one_whose_input_seed_fits_the_record(seed, ok, capsys):
    from gradbench.cli import build_parser
    from gradbench.errors import BadInput
    from gradbench.settings import run_settings

    args = build_parser().parse_args(["run", *TINY, "--seed", str(seed)])
    if ok:
        assert run_settings(args).grid.seed == seed
    else:  # was: accepted, then every case an error (seed + 1 overflowed)
        with pytest.raises(BadInput, match="it must be <= 9223372036854775806"):
            run_settings(args)


@pytest.mark.parametrize("body, message", [
    ('bogus = 1\n[run]\nmodels = ["mlp"]', "outside its [run] table"),  # was: silently ignored
    ('max_time = 0.1\nmax-time = 0.2', "gives 'max_time' twice"),           # was: one of them won
    ("max_time = inf", "(in --config"),                                  # names the file
])
def test_config_keys_that_would_be_ignored_or_doubled_are_refused(capsys, tmp_path, body, message):
    config = tmp_path / "c.toml"
    config.write_text(body + "\n")
    assert message in refused(capsys, ["run", "--config", str(config), "--out", str(tmp_path / "o.jsonl")])


def test_bad_output_paths_are_named_for_what_they_are(capsys, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert "is a folder" in refused(capsys, ["run", *TINY, "--out", str(folder)])  # was: "already has results"
    assert "a part of its path is a file" in refused(capsys, ["run", *TINY, "--out", f"{a_file}/x.jsonl"])
    assert "not a regular file" in refused(capsys, ["run", *TINY, "--out", os.devnull])  # was: exit 1, "make room"
    assert "--out is empty" in refused(capsys, ["run", *TINY, "--out", ""])  # was: a default file
    assert "--config is empty" in refused(capsys, ["run", *TINY, "--config", ""])
    assert "--out is empty" in refused(capsys, ["report", JSONL, "--out", ""])


def test_sigterm_ends_a_run_with_whole_lines_and_no_lock(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "term.jsonl"
    # after mlp's six cases, a model that sleeps: the run is still going when the signal comes, however fast
    run = subprocess.Popen([sys.executable, "-m", "gradbench.cli", "run", "--models", "mlp", SLEEPS, "--sizes", "tiny",
                            "--batch-sizes", "2", "3", "4", "--modes", "eval", "train", "--steps", "forward",
                            "--max-time", "0.05", "--no-report", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out.exists() and out.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 128 + signal.SIGTERM
    data = out.read_bytes()  # a line being written when the signal came is cut back off, whole
    assert (data == b"" or data.endswith(b"\n")) and all(json.loads(line) for line in data.splitlines())
    _lock_is_free(out)


def test_a_factory_that_calls_sys_exit_is_one_line_in_case(capsys, tmp_path):
    module = tmp_path / "exits_in_factory.py"
    module.write_text("import sys\n\ndef build(size='default'):\n    sys.exit(0)\n")
    assert "called sys.exit(0)" in refused(capsys, ["case", "--model", f"{module}:build", "--max-time", "0.02"])


def test_a_factory_that_hangs_times_out_once_per_workload(tmp_path):
    module = tmp_path / "hangs_in_factory.py"
    module.write_text("import time\n\ndef build(size='default'):\n    time.sleep(600)\n")
    model = f"{module}:build"
    out = tmp_path / "out.jsonl"
    assert main(["run", "--models", model, "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "train",
                 "--steps", "forward", "--max-time", "0.02", "--no-report", "--timeout", "3", "--out", str(out)]) == 0
    records = [json.loads(line) for line in open(out)]
    assert [r["status"] for r in records] == ["timeout", "timeout"]  # was: a timeout and a new worker per case
    assert all(r["error"].startswith(f"building {model}/tiny b2 cpu float32 exceeded --timeout 3 s")
               for r in records)


@pytest.mark.parametrize("content, message", [
    ('{"m1": 5}', "not an asv machine file"),  # was: TypeError traceback
    ("[1, 2]", "not an asv machine file"),
    ('{"version": 1, "m1": {"machine": 5}}', "not an asv machine file"),  # another machine's entry, too
])
def test_asv_machine_file_of_another_shape_is_refused(capsys, tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    assert message in refused(capsys, ["asv-machine", "--file", str(path), "--machine", "m1"])
    assert path.read_text() == content


def test_asv_machine_file_with_nan_is_rewritten_without_it(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"version": 1, "old": {"ram": NaN}}')
    assert main(["asv-machine", "--file", str(path), "--machine", "m1"]) == 0
    assert json.loads(path.read_text())["old"] == {"ram": None}  # was: NaN written back


@pytest.mark.parametrize("content, message", [
    ('{"benchmarks": [5], "machine_info": {}}',  # was: AttributeError traceback
     "is malformed: AttributeError: 'int' object has no attribute 'get'"),
    ('{"benchmarks": [{"extra_info": {"model": "mlp", "mode": "eval"}}], "machine_info": 3}',
     "is malformed: AttributeError: 'int' object has no attribute 'get'"),
    ('{"benchmarks": [], "machine_info": 3}', "holds no gradbench pytest-benchmark results"),
])
def test_a_malformed_pytest_benchmark_file_is_one_line(capsys, tmp_path, content, message):
    path = tmp_path / "pb.json"
    path.write_text(content)
    line = refused(capsys, ["report", str(path), "--out", str(tmp_path / "r")])
    assert line == f"gradbench: error: {str(path)!r} {message}"


def test_records_out_of_range_or_unknown_are_skipped_and_overflowing_floats_read_as_null(tmp_path, capsys):
    lines = [json.loads(line) for line in open(JSONL)]
    ok = [i for i, r in enumerate(lines) if r["status"] == "ok"]
    lines[ok[0]]["mode"] = "bogus"  # was: KeyError in report
    lines[ok[1]]["batch_size"] = 10 ** 30  # was: TypeError in report
    text = [json.dumps(r) for r in lines]
    text[ok[2]] = text[ok[2]].replace(f'"time_median_s": {lines[ok[2]]["time_median_s"]}', '"time_median_s": ' +
                                      "1" * 5000)  # was: ValueError, the whole file refused
    text[ok[3]] = text[ok[3]].replace('"flops_per_s": ', '"flops_per_s": 1e999, "x_": ')  # was: read as inf
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(text) + "\n")
    from gradbench.results import read_jsonl

    records, warnings = read_jsonl(path)
    assert len(records) == len(lines) - 3
    assert any("2 record(s) with wrong-typed fields skipped" in w for w in warnings)
    assert any(f"odd.jsonl:{ok[2] + 1}: not a gradbench record" in w for w in warnings)
    assert [r["flops_per_s"] for r in records if "x_" in r] == [None]
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0


def test_an_empty_shard_under_any_name_is_an_empty_result(tmp_path, capsys):
    empty = tmp_path / "shard-2.out"
    empty.write_text("")
    assert main(["report", JSONL, str(empty), "--out", str(tmp_path / "r")]) == 0  # was: "is empty", exit 2


def test_a_hard_link_is_the_same_file(tmp_path):
    from gradbench.results import load

    link = tmp_path / "linked.jsonl"
    os.link(JSONL, link) if os.stat(JSONL).st_dev == os.stat(tmp_path).st_dev else link.symlink_to(JSONL)
    assert len(load([JSONL, str(link)], warn=lambda m: None)) == len(load([JSONL], warn=lambda m: None))


# ---------------------------------------------------------------- issue 24: bad input, one rule each


def test_a_batch_size_beyond_int64_is_one_line_and_no_file(capsys, tmp_path):
    out = tmp_path / "o.jsonl"
    line = refused(capsys, ["run", "--batch-sizes", str(2 ** 63), "--out", str(out)])  # was: a traceback
    assert "bad batch size 9223372036854775808" in line and not out.exists()


def test_capacity_splits_comma_lists_as_run_does(capsys):
    code = main(["capacity", "--models", "mlp,cnn", "--sizes", "tiny", "--modes", "train,eval_no_grad",
                 "--memory-budget", "16MiB", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [(r["model"], r["mode"]) for r in rows] == [
        ("mlp", "train"), ("mlp", "eval_no_grad"), ("cnn", "train"), ("cnn", "eval_no_grad")]


@pytest.mark.parametrize("body, message", [
    ('models = "mlp"', "bad value for 'models' in --config"),  # was: read as ["mlp"]
    ('batch_sizes = ["8"]', "expected a list of integers"),  # was: read as [8]
    ('batch_sizes = 8', "expected a list"),
    ('modes = ["eval", 3]', "expected a list of names"),
])
def test_config_lists_must_be_lists_of_their_type(capsys, tmp_path, body, message):
    config = tmp_path / "c.toml"
    config.write_text(body + "\n")
    assert message in refused(capsys, ["run", "--config", str(config), "--out", str(tmp_path / "o.jsonl")])


@pytest.mark.parametrize("budget", ["99999999999999999999999999GiB", "1e30", "8EiB", "0"])
def test_memory_budgets_follow_one_rule(capsys, budget):
    assert "bad memory budget" in refused(capsys, ["capacity", "--memory-budget", budget])


def test_sigterm_says_how_to_resume(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "term.jsonl"
    # after mlp's six cases, a model that sleeps: the run is still going when the signal comes, however fast
    run = subprocess.Popen([sys.executable, "-m", "gradbench.cli", "run", "--models", "mlp", SLEEPS, "--sizes", "tiny",
                            "--batch-sizes", "2", "3", "4", "--modes", "eval", "train", "--steps", "forward",
                            "--max-time", "0.05", "--no-report", "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out.exists() and out.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM  # was: silent
    assert "terminated (SIGTERM)" in err and f"--out {out} --resume" in err


def test_the_summary_counts_the_records_that_stand(capsys):
    from gradbench.report.summary import print_summary
    from gradbench.record import new_record
    from gradbench.executors.base import Progress

    case = dict(model="mlp", size="tiny", batch_size=2, device="cpu", dtype="float32", mode="eval", step="forward")
    crashed = new_record(**case, status="crashed", error="the Slurm task was cancelled", source="gradbench")
    resumed = new_record(**case, status="ok", time_median_s=1e-3, source="gradbench")
    progress = Progress(total=2, done=2, statuses={"crashed": 1, "ok": 1})
    print_summary("r.jsonl", None, [crashed, resumed], progress, 1.0)
    out = capsys.readouterr().out
    assert "did not complete" not in out  # was: "1 cases did not complete" for a case that is ok
    assert "1 cases (1 ok; 1 earlier attempts superseded)" in out


def test_pytest_benchmarks_autosave_is_ignored_by_git():
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, ".git")):
        pytest.skip("not a git checkout")
    assert subprocess.run(["git", "-C", root, "check-ignore", "-q", ".benchmarks/x.json"]).returncode == 0


@pytest.mark.parametrize("value", ["\u0663", "1_000", "\uff18"])  # Arabic-Indic 3, an underscore, fullwidth 8
def test_integers_are_ascii_decimal_digits(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as stopped:  # argparse's own refusal: one line, exit status 2
        main(["run", "--threads", value])
    assert stopped.value.code == 2 and "is not an integer" in capsys.readouterr().err
    line = refused(capsys, ["run", "--batch-sizes", value, "--out", str(tmp_path / "o.jsonl")])  # was: read as 3
    assert "bad batch size" in line
