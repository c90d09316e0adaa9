"""The command line's bad-input contract and its small commands, run in-process for speed."""
import subprocess
import sys

import pytest

from gradbench.errors import BadInput
import torch

from gradbench import __version__
from gradbench.cli import main
from gradbench.modes import MODES

TINY = ["--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "--steps", "forward",
        "--max-time", "0.05", "--no-report"]


@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "existing.jsonl"
    path.write_text('{"model": "mlp", "mode": "eval", "step": "forward", "status": "ok"}\n')
    return path


def run_bad(capsys, existing, *args):
    before = existing.read_bytes()
    code = main(["run", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert existing.read_bytes() == before
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gradbench: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "resnet9"], r"unknown model 'resnet9'; valid models: mlp, cnn, transformer, resnet, vit, bert"),
        (["--models", "mlp", "cnn", "--sizes", "huge"], r"unknown size 'huge': no model in the grid offers it; valid "
                                                        r"sizes: mlp: tiny, small, medium, large; cnn: tiny, small, "
                                                        r"medium, large$"),
        (["--models", "resnet", "bert", "--sizes", "50", "xl"], r"unknown size 'xl': no model in the grid offers "
                                                                 r"it; valid sizes: resnet: 18, 34, 50, 101, 152; "
                                                                 r"bert: base, large$"),
        (["--models", "resnet", "bert", "--sizes", "50"], r"no size given for bert \(its sizes: base, large\); add "
                                                          r"one to --sizes, or run it apart$"),
        (["--models", "mlp", "--seq-len", "64"], r"--seq-len given, but no model in the grid takes one \(transformer, "
                                                 r"bert, gpt2, llama and user models do\)$"),
        (["--models", "bert", "--sizes", "base", "--image-size", "64"],
         r"--image-size given, but no model in the grid takes one \(resnet, vit do\)$"),
        (["--seq-len", "0"], r"bad --seq-len '0'; it is an integer from 1 to 2\^31$"),
        # a family's own bounds, found on the meta device before any worker starts (not an error record per case)
        (["--models", "bert", "--sizes", "base", "--seq-len", "99999"],
         r"bad seq_len 99999 for bert: an integer from 1 to 512 \(its maximum positions\)$"),
        (["--models", "vit", "--sizes", "ti_16", "--image-size", "30"],
         r"bad image_size 30 for vit; valid: a positive multiple of the patch size 16 \(e.g. 224\)$"),
        (["--seq-len", "x"], r"bad --seq-len 'x'; it is an integer from 1 to 2\^31$"),
        (["--image-size", "2147483649"], r"bad --image-size '2147483649'; it is an integer from 1 to 2\^31$"),
        (["--modes", "eval,fast"], r"unknown mode 'fast'; valid modes: train, eval"),
        (["--dtypes", "int8"], r"unknown dtype 'int8'; valid dtypes: float32, bfloat16, float16"),
        (["--dtypes", "float16", "--devices", "cpu"], r"'float16' is supported on cuda only"),
        (["--devices", "tpu"], r"unknown device 'tpu'; valid devices: cpu, cuda"),
        (["--steps", "backward"], r"unknown step 'backward'; valid steps: forward, train_step"),
        (["--batch-sizes", "0"], r"bad batch size 0"),
        (["--batch-sizes", "-4"], r"bad batch size -4"),
        (["--batch-sizes", "eight"], r"bad batch size 'eight'"),
        (["--shard", "3/2"], r"bad shard '3/2'"),
        (["--shard", "x"], r"bad shard 'x'"),
        (["--models", "no_such_module_anywhere:model"], r"no module named 'no_such_module_anywhere'"),
        (["--models", "tests/fixtures/no_such_file.py:model"], r"model file .* does not exist"),
        (["--repeat", "0"], r"bad --repeat 0; it must be >= 1"),
        (["--repeat", "1000000000"], r"bad --repeat 1000000000; it must be <= 100"),
        (["--retry-untrusted", "-1"], r"bad --retry-untrusted -1; it must be >= 0"),
        (["--max-time", "nan"], r"bad --max-time nan; expected a finite number"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, existing, args, message):
    import re

    line = run_bad(capsys, existing, *TINY, *args, "--out", str(existing), "--resume")
    assert re.search(message, line), line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no GPU is present")
def test_cuda_without_gpu(capsys, existing):
    line = run_bad(capsys, existing, *TINY, "--devices", "cuda", "--out", str(existing), "--resume")
    assert "'cuda' asked for, but no CUDA GPU is available" in line


def test_malformed_and_unknown_config(capsys, tmp_path, existing):
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [mlp\n")
    assert "malformed --config" in run_bad(capsys, existing, "--config", str(bad), "--out", str(existing),
                                           "--resume")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('modelz = ["mlp"]\n')
    line = run_bad(capsys, existing, "--config", str(unknown), "--out", str(existing), "--resume")
    assert "unknown key 'modelz'" in line and "valid keys: models" in line
    assert "cannot read --config" in run_bad(capsys, existing, "--config", str(tmp_path / "none.toml"))


def test_bad_numbers_in_config_are_one_line_errors(capsys, tmp_path, existing):
    for body, message in (('max_time = "soon"', "bad --max-time 'soon'; expected a number"),
                          ('timeout = -1', "bad --timeout -1; it must be >="),
                          ('isolate = "thread"', "bad --isolate 'thread'; valid: worker, case"),
                          ('threads = 0', "bad --threads 0; it must be >= 1"),
                          ('repeat = 2.5', "bad --repeat 2.5; expected an integer"),
                          ('repeat = "3"', "bad --repeat '3'; expected an integer"),
                          ('repeat = true', "bad --repeat True; expected an integer"),
                          ('retry_untrusted = true', "bad --retry-untrusted True; expected an integer"),
                          ('max_time = inf', "bad --max-time inf; expected a finite number")):
        config = tmp_path / "c.toml"
        config.write_text(body + "\n")
        args = [a for a in TINY if a not in ("--max-time", "0.05")]  # the command line would win
        assert message in run_bad(capsys, existing, *args, "--config", str(config), "--out", str(existing),
                                  "--resume")


def test_unwritable_out(capsys, existing, tmp_path):
    line = run_bad(capsys, existing, *TINY, "--out", str(existing / "sub" / "r.jsonl"))
    assert "cannot write --out" in line


def test_out_with_results_needs_resume(capsys, existing):
    assert "pass --resume" in run_bad(capsys, existing, *TINY, "--out", str(existing))


def test_resume_needs_out(capsys, existing):
    assert "--resume needs --out" in run_bad(capsys, existing, *TINY, "--resume")


def test_resume_on_foreign_file(capsys, tmp_path, existing):
    foreign = tmp_path / "data.csv"
    foreign.write_text("a,b\n1,2\n")
    line = run_bad(capsys, existing, *TINY, "--out", str(foreign), "--resume")
    assert "is not a gradbench JSONL results file" in line
    assert foreign.read_text() == "a,b\n1,2\n"


def test_unknown_option_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "gradbench.cli", "run", "--bogus"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unrecognized arguments: --bogus" in result.stderr


def test_config_file_sets_grid_and_command_line_wins(tmp_path):
    from gradbench.cli import build_parser
    from gradbench.settings import run_settings

    config = tmp_path / "sweep.toml"
    config.write_text('models = ["cnn"]\nsizes = ["tiny"]\nbatch_sizes = [2, 4]\nmodes = ["eval"]\n'
                      'max_time = 0.1\nquick = true\n')
    args = build_parser().parse_args(["run", "--config", str(config), "--batch-sizes", "16"])
    grid = run_settings(args).grid
    assert grid.models == ("cnn",) and grid.batch_sizes == (16,) and grid.modes == ("eval",)
    assert grid.max_time_s == 0.1
    quick = run_settings(build_parser().parse_args(["run", "--quick"])).grid
    assert quick.sizes == ("tiny",) and quick.max_time_s == 0.2
    everything = run_settings(build_parser().parse_args(["run", "--modes", "all"])).grid
    assert len(everything.modes) == len(MODES)


def test_input_axes_come_from_the_config_file_and_the_command_line(tmp_path):
    from gradbench.cli import build_parser
    from gradbench.settings import run_settings

    config = tmp_path / "sweep.toml"
    config.write_text('models = ["transformer", "resnet"]\nsizes = ["tiny", "18"]\nseq_len = [16, 64]\n'
                      'image_size = [32]\nbatch_sizes = [2]\nmodes = ["eval"]\nsteps = ["forward"]\n')
    settings = run_settings(build_parser().parse_args(["run", "--config", str(config)]))
    assert (settings.grid.seq_lens, settings.grid.image_sizes) == ((16, 64), (32,))
    assert [(c.model, c.seq_len, c.image_size) for c in settings.cases] == [
        ("transformer", 16, None), ("transformer", 64, None), ("resnet", None, 32)]
    given = run_settings(build_parser().parse_args(["run", "--config", str(config), "--seq-len", "8,128"]))
    assert given.grid.seq_lens == (8, 128)
    config.write_text('seq_len = ["16"]\n')
    with pytest.raises(BadInput, match=r"bad value for 'seq_len' in --config .*expected a list of integers"):
        run_settings(build_parser().parse_args(["run", "--config", str(config)]))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out


def test_list_and_env(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "transformer" in out and "101,838,858" in out and "finetune_head" in out
    assert main(["env"]) == 0
    assert torch.__version__ in capsys.readouterr().out


def test_explain_measures_every_mode(capsys):
    assert main(["explain", "--models", "transformer", "--size", "tiny", "--batch-size", "4",
                 "--max-time", "0.05", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert len([r for r in rows if r not in ("mode",)]) == len(MODES)
    cells = [c.strip() for c in rows["eval_no_grad"].split("|")]
    header = [c.strip() for c in rows["mode"].split("|")]
    assert cells[header.index("fast path")] == "yes"
    assert cells[header.index("graph recorded")] == "no"
    train = [c.strip() for c in rows["train"].split("|")]
    assert train[header.index("dropout active")] == "yes"


def test_explain_bad_input(capsys):
    assert main(["explain", "--models", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_selfcheck_exit_status_is_its_verdict(capsys):
    code = main(["selfcheck"])
    out = capsys.readouterr().out
    assert "timer overhead" in out and "noise cpu" in out
    assert out.count("agreement cpu") == 3 and "torch.utils.benchmark" in out
    assert code == (1 if "WARNING: this machine may be too noisy" in out else 0)
    assert ("OK: quiet enough" in out) == (code == 0)


class _Seen:
    def __init__(self, other, steal=0.0):
        from gradbench.measure.contention import Contention

        self.result = Contention(cpu_other_share=other, cpu_steal_share=steal, window_s=1.0)

    def start(self):
        return self

    def stop(self):
        return self.result


def test_selfcheck_fails_on_a_noisy_machine_and_passes_on_a_quiet_one(capsys, monkeypatch):
    from gradbench import selfcheck

    monkeypatch.setattr(selfcheck, "contention_monitor", lambda device="cpu": _Seen(0.0))
    monkeypatch.setattr(selfcheck, "agreement", lambda case: (1.0e-3, 1.01e-3))
    monkeypatch.setattr(selfcheck, "reference_noise", lambda device: (1e-4, 0.30))
    assert main(["selfcheck"]) == 1
    assert "IQR is 30.0% of its median" in capsys.readouterr().out
    monkeypatch.setattr(selfcheck, "reference_noise", lambda device: (1e-4, 0.01))
    assert main(["selfcheck"]) == 0
    monkeypatch.setattr(selfcheck, "agreement", lambda case: (1.0e-3, 1.5e-3))
    assert main(["selfcheck"]) == 1
    assert "(-33.3%)" in capsys.readouterr().out


def test_selfcheck_fails_naming_contention(capsys, monkeypatch):
    from gradbench import selfcheck

    monkeypatch.setattr(selfcheck, "agreement", lambda case: (1.0e-3, 1.0e-3))
    monkeypatch.setattr(selfcheck, "reference_noise", lambda device: (1e-4, 0.01))
    monkeypatch.setattr(selfcheck, "contention_monitor", lambda device="cpu": _Seen(0.45, steal=0.12))
    assert main(["selfcheck"]) == 1
    out = capsys.readouterr().out
    assert "other processes used 45% of the CPUs" in out and "stole 12%" in out


def test_torch_timer_comparison_gives_both_medians(monkeypatch):
    import time
    import types

    import torch.utils.benchmark

    from gradbench import selfcheck

    # for real: a step that sleeps 2 ms takes at least 2 ms by either clock
    ours, theirs = selfcheck.compare_with_torch_timer(lambda: time.sleep(2e-3), "cpu", max_time_s=0.15)
    assert ours >= 2e-3 and theirs >= 2e-3
    # each side is the median of its rounds' medians, gradbench's first
    rounds = {"ours": iter([6e-3, 2e-3, 1e-3]), "theirs": iter([10e-3, 6e-3, 5e-3])}  # median, not mean, first, last
    monkeypatch.setattr(selfcheck, "time_step", lambda *a, **k: types.SimpleNamespace(median=next(rounds["ours"])))

    class Timer:
        def __init__(self, *a, **k):
            pass

        def adaptive_autorange(self, **k):
            return types.SimpleNamespace(median=next(rounds["theirs"]))

    monkeypatch.setattr(torch.utils.benchmark, "Timer", Timer)
    assert selfcheck.compare_with_torch_timer(lambda: None, "cpu", rounds=3) == (2e-3, 6e-3)


def test_a_shard_with_no_cases_is_not_an_error(tmp_path, capsys):
    out = tmp_path / "empty.jsonl"
    assert main(["run", *TINY, "--shard", "2/2", "--out", str(out)]) == 0  # TINY has one case
    captured = capsys.readouterr()
    assert "0 cases to run" in captured.err and "Traceback" not in captured.err


def test_explain_names_a_model_that_changes_global_state(capsys):
    assert main(["explain", "--models", "state_changers:build", "--size", "grad_off@forward", "--batch-size", "2",
                 "--max-time", "0.02"]) == 0
    captured = capsys.readouterr()
    assert "  ! model 'state_changers:build' changed global torch state inside its forward" in captured.out
    assert "gradbench: warning: model 'state_changers:build' changed global torch state" in captured.err


def test_case_takes_a_seq_len_and_capacity_takes_each_model_s_own_sizes(capsys):
    import json

    assert main(["case", "--model", "transformer", "--size", "tiny", "--batch-size", "2", "--seq-len", "8",
                 "--max-time", "0.05"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["status"], record["seq_len"], record["image_size"]) == ("ok", 8, None)
    assert main(["case", "--model", "mlp", "--size", "tiny", "--seq-len", "8"]) == 2
    assert capsys.readouterr().err.strip() == ("gradbench: error: model 'mlp' takes no seq_len (transformer, bert, "
                                               "gpt2, llama do); leave --seq-len out for it")
    assert main(["capacity", "--models", "resnet", "bert", "--sizes", "50", "--memory-budget", "1GiB"]) == 2
    assert capsys.readouterr().err.strip() == ("gradbench: error: no size given for bert (its sizes: base, large); "
                                               "add one to --sizes, or run it apart")
