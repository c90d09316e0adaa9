import statistics

import pytest
import torch

import gradbench
from gradbench.workload import Workload
from gradbench.modes import MODES
from gradbench.record import type_errors
from gradbench.schema import RECORD_FIELDS

FAST = 0.05  # seconds of timing per case: these tests check behaviour, not speed

# mode -> (dropout_active, bn_stats_updated, graph_recorded, saves activations, fastpath) on torch 2.13 CPU
TRUTH = {
    "train": (True, True, True, True, False),
    "eval": (False, False, True, True, False),
    "no_grad": (True, True, False, False, False),
    "eval_no_grad": (False, False, False, False, True),
    "frozen": (True, True, False, False, False),
    "frozen_eval": (False, False, False, False, True),
    "inference_mode": (True, True, False, False, False),
    "eval_inference_mode": (False, False, False, False, True),
    "finetune_head": (True, True, True, True, False),
    "as_built": (True, True, True, True, False),  # built-in models are built as nn.Module leaves them: train, trainable
}


@pytest.fixture(scope="module")
def records():
    out = {}
    for family in ("mlp", "transformer"):
        workload = Workload(family, "tiny", 8, "cpu", "float32")
        for mode in MODES:
            out[family, mode] = gradbench.run_case(
                model=family, size="tiny", batch_size=8, mode=mode, max_time_s=FAST, workload=workload
            )
    return out


@pytest.mark.parametrize("family", ["mlp", "transformer"])
@pytest.mark.parametrize("mode", list(MODES))
def test_measured_behaviour_matches_truth(records, family, mode):
    r = records[family, mode]
    assert r["status"] == "ok", r["error"]
    dropout, bn_updated, graph, saves, fastpath = TRUTH[mode]
    assert r["dropout_active"] is dropout
    assert r["graph_recorded"] is graph
    assert (r["saved_bytes"] > 0) is saves
    if family == "mlp":
        assert r["bn_stats_updated"] is bn_updated
        assert r["bn_batch_stats"] is (MODES[mode].training is not False)  # as_built (None): built in train mode
        assert r["fastpath"] is None
    else:  # LayerNorm only: no BatchNorm to observe
        assert r["bn_stats_updated"] is None and r["bn_batch_stats"] is None
        assert r["fastpath"] is fastpath
    # eval-flag modes compute the same function as eval_no_grad; dropout-active ones do not
    assert (r["max_abs_diff_vs_eval_no_grad"] < 1e-4) is (not dropout)


@pytest.mark.parametrize("family", ["mlp", "transformer"])
def test_saved_bytes_ordering(records, family):
    saved = {m: records[family, m]["saved_bytes"] for m in MODES}
    assert saved["train"] > saved["eval"] > 0
    if family == "mlp":  # eval keeps, in each of the 4 blocks, its Linear's output (BatchNorm's input) and ReLU's
        assert saved["eval"] == 4 * 2 * (8 * 144) * 4
    # finetune_head keeps only the head's input: batch x head.in_features floats
    head_in = {"mlp": 144, "transformer": 64}[family]
    assert saved["finetune_head"] == 8 * head_in * 4
    assert records[family, "finetune_head"]["grads_computed"] == 2


def test_grads_computed_counts_parameters(records):
    r = records["mlp", "train"]
    n_tensors = len(list(Workload("mlp", "tiny", 2, "cpu", "float32").model.parameters()))
    assert r["grads_computed"] == n_tensors
    assert records["mlp", "frozen"]["grads_computed"] == 0


def test_record_has_schema_and_sane_numbers(records):
    r = records["mlp", "eval_no_grad"]
    assert set(r) == set(RECORD_FIELDS) and type_errors(r) == []
    assert r["n_samples"] >= 5 and len(r["samples_s"]) == r["n_samples"]
    assert r["time_median_s"] == statistics.median(r["samples_s"])
    # 2 flops per multiply-add of each Linear (256->144, 3 x 144->144, 144->10) over a batch of 8; BatchNorm uncounted
    assert r["flops"] == 2 * 8 * (256 * 144 + 3 * 144 * 144 + 144 * 10)
    assert r["flops_per_s"] == r["flops"] / r["time_median_s"]
    assert r["params"] == 102250 and r["param_bytes"] == 102250 * 4
    assert r["torch"] == torch.__version__ and r["threads"] == torch.get_num_threads()
    assert r["cuda_max_allocated_bytes"] is None
    # forward flops do not depend on the mode, even where the fast path hides its matmuls
    t = [records["transformer", m]["flops"] for m in MODES]
    assert len(set(t)) == 1


def test_peak_memory_train_above_eval_above_eval_no_grad():
    workload = Workload("mlp", "small", 64, "cpu", "float32")
    peak = {
        m: gradbench.run_case(model="mlp", size="small", batch_size=64, mode=m, max_time_s=FAST,
                              workload=workload)["peak_bytes"]
        for m in ("train", "eval", "eval_no_grad")
    }
    assert peak["train"] > peak["eval"] > peak["eval_no_grad"]
    assert peak["eval_no_grad"] >= 2 * 64 * 528 * 4  # a hidden Linear's input and output are alive together


def test_train_step_where_graph_exists_and_not_applicable_elsewhere():
    workload = Workload("mlp", "tiny", 8, "cpu", "float32")
    before = [p.clone() for p in workload.model.parameters()]
    all_bytes = sum(p.numel() * 4 for p in workload.model.parameters())
    head_bytes = sum(p.numel() * 4 for p in workload.model.head.parameters())
    for mode in MODES:
        r = gradbench.run_case(model="mlp", size="tiny", batch_size=8, mode=mode, step="train_step",
                               max_time_s=FAST, workload=workload)
        if MODES[mode].records_graph:
            assert r["status"] == "ok", r["error"]
            # a gradient for every parameter the mode trains: all of them, or the head's only
            assert r["grad_bytes"] == (head_bytes if mode == "finetune_head" else all_bytes), mode
            assert r["peak_bytes"] >= r["grad_bytes"]
        else:
            assert r["status"] == "not_applicable" and r["time_median_s"] is None
    # every mode saw the same weights: the optimizer's updates were undone
    assert all(torch.equal(a, b) for a, b in zip(before, workload.model.parameters()))


def test_batch_norm_batch_of_one_in_train_is_not_applicable_with_pytorchs_reason():
    r = gradbench.run_case(model="mlp", size="tiny", batch_size=1, mode="train", max_time_s=FAST)
    assert r["status"] == "not_applicable" and "PyTorch refuses a batch of one" in r["error"]
    assert "Expected more than 1 value per channel" in r["error"] and r["time_median_s"] is None
    ok = gradbench.run_case(model="mlp", size="tiny", batch_size=1, mode="eval_no_grad", max_time_s=FAST)
    assert ok["status"] == "ok"


def test_user_model_case_and_finetune_head_without_linear():
    r = gradbench.run_case(model="user_models:tuple_input", size="x", batch_size=4, mode="eval", max_time_s=FAST)
    assert r["status"] == "ok" and r["dropout_active"] is False and r["bn_stats_updated"] is None
    r = gradbench.run_case(model="user_models:no_linear", size="x", batch_size=4, mode="finetune_head",
                           max_time_s=FAST)
    assert r["status"] == "error" and "nn.Linear" in r["error"]


def test_bfloat16_runs_on_cpu():
    r = gradbench.run_case(model="mlp", size="tiny", batch_size=4, dtype="bfloat16", mode="eval_no_grad",
                           max_time_s=FAST)
    assert r["status"] == "ok" and r["param_bytes"] == r["params"] * 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "fast"}, r"unknown mode 'fast'.*valid modes: train, eval"),
        ({"model": "vgg"}, r"unknown model 'vgg'.*mlp, cnn, transformer"),
        ({"size": "xl"}, r"unknown size 'xl'.*tiny, small, medium, large"),
        ({"dtype": "int8"}, r"unknown dtype 'int8'.*float32, bfloat16, float16"),
        ({"dtype": "float16"}, r"'float16' is supported on cuda only"),
        ({"device": "tpu"}, r"unknown device 'tpu'.*cpu, cuda"),
        ({"batch_size": 0}, r"bad batch size 0.*from 1"),
        ({"batch_size": -3}, r"bad batch size -3"),
        ({"step": "backward"}, r"unknown step 'backward'.*forward, train_step"),
        ({"seq_len": 16}, r"^model 'mlp' takes no seq_len \(transformer, bert, gpt2, llama do\); leave --seq-len out "
                          r"for it$"),
        ({"image_size": 64}, r"^model 'mlp' takes no image_size \(resnet, vit do\)"),
        ({"model": "transformer", "seq_len": 0}, r"^bad seq_len 0; it is an integer from 1 to 2\^31$"),
        ({"model": "transformer", "seq_len": 2 ** 31 + 1}, r"^bad seq_len 2147483649; it is an integer from 1"),
        ({"model": "transformer", "seq_len": True}, r"^bad seq_len True"),
        ({"model": "transformer", "seq_len": 8.0}, r"^bad seq_len 8.0"),
        ({"model": "user_models:two_linear", "image_size": 32}, r"^a user model takes no image_size"),
    ],
)
def test_bad_arguments_raise_value_error_naming_valid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gradbench.run_case(**{"model": "mlp", "size": "tiny", "batch_size": 2, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no GPU is present")
def test_cuda_without_gpu_is_clear_error():
    with pytest.raises(ValueError, match=r"'cuda' asked for, but no CUDA GPU is available"):
        gradbench.run_case(model="mlp", size="tiny", batch_size=2, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_peak_matches_the_allocator_measured_apart(dtype):
    """The record's peak against torch.cuda's statistics read around the same step by plain code here."""
    from gradbench.modes import apply_mode
    from gradbench.workload import make_step

    workload = Workload("transformer", "tiny", 8, "cuda", dtype)
    r = gradbench.run_case(model="transformer", size="tiny", batch_size=8, device="cuda", dtype=dtype,
                           mode="train", step="train_step", max_time_s=FAST, workload=workload)
    assert r["status"] == "ok", r["error"]
    with workload.parameters_restored(), apply_mode(workload.model, "train") as applied:
        step = make_step(workload, applied, "train_step")
        torch.cuda.empty_cache()  # as the pipeline does: every case from the same cache
        step.run()
        step.settle()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step.run()
        torch.cuda.synchronize()
        expected = torch.cuda.max_memory_allocated() - before
    assert r["peak_bytes"] == expected
    assert 0 < r["requested_peak_bytes"] <= r["peak_bytes"]  # the allocator rounds requests up to blocks
    assert r["peak_bytes"] > r["grad_bytes"] > 0  # the gradients made by the step are in its peak
    assert r["gpu"] and r["gpu_count"] >= 1 and r["cudnn_benchmark"] is False


@pytest.mark.gpu
@pytest.mark.multi_gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_case_on_the_second_gpu_measures_that_gpu():
    torch.cuda.reset_peak_memory_stats(0)
    before = torch.cuda.max_memory_allocated(0)
    r = gradbench.run_case(model="mlp", size="small", batch_size=64, device="cuda:1", mode="train",
                           step="train_step", max_time_s=FAST)
    assert r["status"] == "ok" and r["peak_bytes"] > 0
    assert torch.cuda.max_memory_allocated(0) == before  # nothing of the case landed on cuda:0


def test_train_step_flops_equal_a_count_of_one_step_alone():
    """The pipeline counts a train step's flops in the step that also runs the memory tracker."""
    from torch.utils.flop_counter import FlopCounterMode

    from gradbench.modes import apply_mode
    from gradbench.workload import make_step

    workload = Workload("cnn", "tiny", 4, "cpu", "float32")
    r = gradbench.run_case(model="cnn", size="tiny", batch_size=4, mode="train", step="train_step",
                           max_time_s=FAST, workload=workload)
    with workload.parameters_restored(), apply_mode(workload.model, "train") as applied:
        step = make_step(workload, applied, "train_step")
        counter = FlopCounterMode(display=False)
        with counter:
            step.run()
    assert r["flops"] == counter.get_total_flops() > 0


def test_input_axes_are_identity_and_part_of_every_key():
    from gradbench.case import Case
    from gradbench.record import case_key

    bert = Case("bert", "base", 8, seq_len=512)
    assert (bert.identity()["seq_len"], bert.identity()["image_size"]) == (512, None)
    assert bert.workload_key == ("bert", "base", 8, "cpu", "float32", 0, 512, None)
    assert bert.group_key == (*bert.workload_key, "none", "none")
    assert case_key(bert.identity()) == ("bert", "base", 8, "cpu", "float32", "none", "none", 512, None,
                                         "eval_no_grad", "forward")
    assert case_key(bert.identity()) != case_key(Case("bert", "base", 8, seq_len=128).identity())
    # a family that takes an axis runs at its default when none is given, and says so; others take none
    assert (Case("bert", "base").seq_len, Case("resnet", "50").image_size, Case("transformer").seq_len) == \
        (128, 224, 32)
    assert (Case("mlp").seq_len, Case("mlp").image_size, Case("m:f").seq_len) == (None, None, None)


def test_a_user_model_s_seq_len_reaches_its_make_input_and_the_record():
    r = gradbench.run_case(model="user_models:keyword_inputs", size="x", batch_size=2, seq_len=5, max_time_s=FAST)
    assert r["status"] == "ok" and (r["seq_len"], r["image_size"]) == (5, None)
    assert r["held_bytes"] == r["param_bytes"] + 2 * 5 * 8 + 2 * 5 * 4  # int64 ids and float32 mask held
