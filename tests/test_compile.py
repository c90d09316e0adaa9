"""torch.compile and autocast as sweep axes (issue 16), on the tiny MLP only: a compile takes seconds.

What the records say is checked against instruments the pipeline does not use for them: the output
of the eager model, dynamo's own graph counter and compile-time metrics.
"""
import json
import subprocess
import sys

import pytest
import torch

from gradbench.case import Case
from gradbench.session import run_case
from gradbench.record import case_key
from gradbench.plan import Grid, group_by_workload, shuffled
from gradbench.workload import Workload


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _compile_inner_s() -> float:
    from torch._dynamo.utils import compilation_time_metrics

    return sum(sum(v) for k, v in compilation_time_metrics.items() if k.endswith("compile_inner"))


@pytest.fixture(scope="module")
def compiled_group():
    """One workload's modes on one compiled model, as a sweep's group runs them; with dynamo's own counts."""
    workload = Workload("mlp", "tiny", 8, "cpu", "float32")
    records = []
    for mode, step in [("eval_no_grad", "forward"), ("train", "forward"), ("train", "train_step"),
                       ("eval_no_grad", "forward")]:
        graphs, compile_s = _graphs(), _compile_inner_s()
        record = run_case("mlp", "tiny", 8, mode=mode, step=step, workload=workload, compile="default",
                          max_time_s=0.1)
        records.append((record, _graphs() - graphs, _compile_inner_s() - compile_s))
    return records


def test_compiled_eval_no_grad_agrees_with_eager_and_times_its_compile(compiled_group):
    record, graphs, compile_s = compiled_group[0]
    assert record["status"] == "ok", record["error"]
    assert (record["compile"], record["autocast"], record["compile_cold"]) == ("default", "none", False)
    assert record["max_abs_diff_vs_eval_no_grad"] < 1e-5  # against the eager model's output
    assert record["compiles"] == graphs == 1 and record["recompiles"] == 0 and record["graph_breaks"] == 0
    # the first call's extra time is dynamo's compile (its own metric), not part of the samples
    assert 0.5 * compile_s < record["compile_time_s"] < 2 * compile_s + 1.0
    assert max(record["samples_s"]) < record["compile_time_s"]
    assert record["fastpath"] is None and record["bn_batch_stats"] is None  # invisible inside a compiled graph
    assert record["bn_stats_updated"] is False and record["dropout_active"] is False


def test_a_mode_switch_on_a_compiled_model_is_counted_as_a_recompilation(compiled_group):
    train, graphs, _ = compiled_group[1]
    assert train["status"] == "ok", train["error"]
    assert train["compiles"] == graphs >= 1 and train["recompiles"] >= 1
    # eval_no_grad -> train changes the grad mode and the training flag; dynamo's global-state guard fails first
    assert train["recompile_reasons"] == ["GLOBAL_STATE changed: grad_mode"]
    # the compiled train forward still behaves as train mode: dropout on, statistics updated, a graph
    assert train["dropout_active"] and train["bn_stats_updated"] and train["graph_recorded"]
    assert train["grads_computed"] is None  # no probe backward: it would compile the train step's backward
    step, graphs, _ = compiled_group[2]  # the train step reuses the train forward's graph
    assert step["status"] == "ok" and step["recompiles"] == graphs == 0
    assert step["saved_bytes"] == train["saved_bytes"]  # what the train forward's compiled graph saves
    assert step["compiles"] <= 1  # the backward graph, compiled at the first backward unless a cache held it
    assert step["grads_computed"] == len(list(Workload("mlp", "tiny", 8, "cpu", "float32").model.parameters()))
    assert step["flops"] > train["flops"]  # counted on the eager step: forward, backward
    again, graphs, _ = compiled_group[3]  # back to eval_no_grad: its code is still cached
    assert again["compiles"] == again["recompiles"] == graphs == 0
    assert again["graph_breaks"] == 0  # its group's earlier compile of the mode met none
    assert abs(again["compile_time_s"]) < 0.1


def test_cold_compiles_every_mode_from_empty_caches():
    workload = Workload("mlp", "tiny", 8, "cpu", "float32")
    for mode in ("eval_no_grad", "eval_no_grad"):
        graphs = _graphs()
        record = run_case("mlp", "tiny", 8, mode=mode, workload=workload, compile="default", compile_cold=True,
                          max_time_s=0.05)
        assert record["compile_cold"] is True and record["compiles"] == 1 and record["recompiles"] == 0
        assert _graphs() - graphs == 1  # compiled again, though the previous case compiled the same mode


def test_autocast_bfloat16_on_cpu_records_its_dtype_and_its_difference():
    workload = Workload("mlp", "tiny", 8, "cpu", "float32")
    plain = run_case("mlp", "tiny", 8, workload=workload, max_time_s=0.05)
    low = run_case("mlp", "tiny", 8, workload=workload, autocast="bfloat16", max_time_s=0.05)
    assert low["status"] == "ok" and (low["autocast"], low["compile"]) == ("bfloat16", "none")
    assert plain["output_dtype"] == "torch.float32" and low["output_dtype"] == "torch.bfloat16"
    assert plain["max_abs_diff_vs_eval_no_grad"] == 0.0 < low["max_abs_diff_vs_eval_no_grad"] < 0.5
    assert low["compile_time_s"] is None and low["recompiles"] is None  # eager
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():  # the same forward by hand
        workload.model.eval()
        expected = workload.model(*workload.inputs.args, **workload.inputs.kwargs)
        workload.model.train()
    assert str(expected.dtype) == low["output_dtype"]


def test_autocast_of_a_model_already_in_low_precision_is_not_applicable():
    record = run_case("mlp", "tiny", 8, dtype="bfloat16", autocast="bfloat16", max_time_s=0.05)
    assert record["status"] == "not_applicable" and "float32" in record["error"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(compile="reduce-overhead"), "compile 'reduce-overhead' needs a CUDA device"),
    (dict(compile="fast"), "unknown compile 'fast'; valid compile settings: none, default, max-autotune"),
    (dict(autocast="float16"), "autocast 'float16' needs a CUDA device"),
    (dict(autocast="half"), "unknown autocast 'half'"),
    (dict(compile_cold="yes"), "bad compile_cold 'yes'"),
])
def test_bad_settings_are_refused_naming_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Case(**kwargs).validate()


def test_the_grid_groups_cases_by_compiled_model_and_keys_them_apart():
    grid = Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(8,), modes=("train", "eval"), steps=("forward",),
                compile=("none", "default"), autocast=("none", "bfloat16"))
    cases = grid.cases()
    groups = group_by_workload(cases)
    assert len(cases) == 8 and len(groups) == 4
    assert all(len({(c.compile, c.autocast) for c in g}) == 1 for g in groups)
    assert len({case_key(c.identity()) for c in cases}) == 8
    eager = [g for g in groups if g[0].compile == g[0].autocast == "none"][0]
    before = Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(8,), modes=("train", "eval"), steps=("forward",))
    assert shuffled(eager, 0) == shuffled(before.cases(), 0)  # today's sweep, in today's order
    old = {"model": "mlp", "size": "tiny", "batch_size": 8, "device": "cpu", "dtype": "float32",
           "mode": "train", "step": "forward"}  # a record from before the fields existed ran eager
    assert case_key(old) == case_key(before.cases()[0].identity())


def _gradbench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gradbench.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["--compile", "reduce-overhead"], "compile 'reduce-overhead' needs a CUDA device"),
    (["--autocast", "none,float16"], "autocast 'float16' needs a CUDA device"),
    (["--compile", "turbo"], "unknown compile 'turbo'"),
])
def test_run_refuses_bad_axes_in_one_line(tmp_path, args, message):
    out = tmp_path / "r.jsonl"
    result = _gradbench("run", "--models", "mlp", "--sizes", "tiny", "--out", str(out), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_config_file_sets_the_axes_and_a_sweep_records_them(tmp_path):
    config, out = tmp_path / "c.toml", tmp_path / "r.jsonl"
    config.write_text('models = ["mlp"]\nsizes = ["tiny"]\nbatch_sizes = [4]\nmodes = ["eval_no_grad"]\n'
                      'steps = ["forward"]\nautocast = ["none", "bfloat16"]\nmax_time = 0.05\n')
    result = _gradbench("run", "--config", str(config), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["autocast"], r["output_dtype"], r["status"]) for r in records) == [
        ("bfloat16", "torch.bfloat16", "ok"), ("none", "torch.float32", "ok")]


def test_the_harnesses_case_records_its_compile_and_refuses_cuda_only_settings_here(monkeypatch):
    from gradbench.harness import BenchmarkCase, NotApplicable, grid_from_env

    case = BenchmarkCase("mlp", "tiny", 8, "cpu", "eval_no_grad", compile="default")
    try:
        case.block()
        assert case.record["compile"] == "default" and case.record["compile_time_s"] > case.per_step_s
        assert case.record["compiles"] is not None
    finally:
        case.close()
    with pytest.raises(NotApplicable, match="needs a CUDA device"):
        BenchmarkCase("mlp", "tiny", 8, "cpu", "eval_no_grad", compile="reduce-overhead")
    assert grid_from_env().compile == ("none",)  # off unless asked for
    monkeypatch.setenv("GRADBENCH_COMPILE", "none,default")
    monkeypatch.setenv("GRADBENCH_AUTOCAST", "bfloat16")
    grid = grid_from_env()
    assert (grid.compile, grid.autocast) == (("none", "default"), ("bfloat16",))
    monkeypatch.setenv("GRADBENCH_COMPILE", "fast")
    with pytest.raises(ValueError, match="unknown compile 'fast'"):
        grid_from_env()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: reduce-overhead and float16 autocast "
                    "are CUDA-only (run on a GPU machine)")
def test_reduce_overhead_with_float16_autocast_on_cuda():
    workload = Workload("mlp", "tiny", 8, "cuda", "float32")
    for mode in ("eval_no_grad", "train"):
        record = run_case("mlp", "tiny", 8, device="cuda", mode=mode, workload=workload, compile="reduce-overhead",
                          autocast="float16", max_time_s=0.2)
        assert record["status"] == "ok", record["error"]
        assert record["output_dtype"] == "torch.float16" and record["compiles"] >= 1
        assert record["cuda_max_allocated_bytes"] is not None and record["time_median_s"] > 0
    assert record["recompiles"] >= 1  # train after eval_no_grad


def test_graph_breaks_are_counted_and_carried_to_the_cases_that_reuse_the_code():
    workload = Workload("user_models:graph_break", "x", 4, "cpu", "float32")
    first = run_case("user_models:graph_break", "x", 4, mode="eval_no_grad", workload=workload, compile="default",
                     max_time_s=0.05)
    again = run_case("user_models:graph_break", "x", 4, mode="eval_no_grad", workload=workload, compile="default",
                     max_time_s=0.05)
    assert first["status"] == "ok" and first["graph_breaks"] >= 1 and first["compiles"] >= 2  # two frames
    assert first["max_abs_diff_vs_eval_no_grad"] < 1e-5
    assert again["compiles"] == 0 and again["graph_breaks"] == first["graph_breaks"]


def test_the_eager_reference_is_taken_before_a_compiled_train_step_moves_batchnorm_statistics():
    workload = Workload("mlp", "tiny", 8, "cpu", "float32")  # BatchNorm: train mode updates its statistics
    train = run_case("mlp", "tiny", 8, mode="train", workload=workload, compile="default", max_time_s=0.05)
    inference = run_case("mlp", "tiny", 8, mode="eval_no_grad", workload=workload, compile="default",
                         max_time_s=0.05)
    assert train["status"] == inference["status"] == "ok"
    assert inference["max_abs_diff_vs_eval_no_grad"] < 1e-5 and train["max_abs_diff_vs_eval_no_grad"] > 1e-3


def test_each_run_case_compiles_its_own_model():
    """A freed workload's id() is often the next one's: the compiled model must not be taken for it."""
    train = run_case("mlp", "tiny", 4, mode="train", compile="default", max_time_s=0.05)
    inference = run_case("mlp", "tiny", 4, mode="eval_no_grad", compile="default", max_time_s=0.05)
    assert train["dropout_active"] is True and inference["dropout_active"] is False
    assert inference["max_abs_diff_vs_eval_no_grad"] < 1e-5 and inference["compiled_graphs"] >= 1


def test_a_model_dynamo_does_not_compile_is_not_applicable_never_eager_labelled_compiled():
    record = run_case("user_models:compile_disabled", "x", 4, mode="eval_no_grad", compile="default",
                      max_time_s=0.05)
    assert record["status"] == "not_applicable" and "no compiled graph runs" in record["error"]
    assert record["time_median_s"] is None


def test_compilation_while_timed_makes_the_time_untrusted_and_names_the_guard():
    record = run_case("user_models:value_guarded", "x", 4, mode="train", step="train_step", compile="default",
                      max_time_s=0.05)
    assert record["status"] == "ok", record["error"]
    assert record["time_trusted"] is False and "while timed" in record["time_distrust"]
    assert " == " in record["time_distrust"]  # the value the graph was specialised on
    assert record["recompiles"] >= 2


def test_a_compiled_train_step_first_leaves_the_weights_for_its_behaviour_probes():
    workload = Workload("mlp", "tiny", 8, "cpu", "float32")
    step = run_case("mlp", "tiny", 8, mode="eval", step="train_step", workload=workload, compile="default",
                    max_time_s=0.05)
    assert step["status"] == "ok" and step["max_abs_diff_vs_eval_no_grad"] < 1e-6  # eval: no dropout, same weights
    assert step["compiled_graphs"] >= 2 and step["graph_breaks"] == 0  # a forward graph and a backward one
