"""Every mode and both steps on one size of each reference family, on CPU, through the real pipeline (a Session,
as the sweep's worker measures): each case is ok, or not_applicable exactly where the design says (a train step
without a graph), and the behaviour flags are what the mode sets (issue 27's "Done when").

Each family is built once and measured in all its cases. Llama's smallest published size (1b) takes ~27 s and
~6 GiB to build, so Llama runs here at a toy shape through the zoo's own builder, as a user model
(tests/fixtures/small_hf.py: keyword inputs, make_input given seq_len, the family's loss); 1b was run by hand.
BERT and GPT-2 take most of a minute each on one thread: they are in the integration tier (conftest.py).
"""
import pytest

from gradbench.case import Case
from gradbench.modes import MODES
from gradbench.session import Session

# model -> (size, input axis, the module finetune_head trains, whether the forward has dropout, BatchNorm)
FAMILIES = {
    "resnet": ("18", {"image_size": 32}, "fc", False, True),
    "vit": ("ti_16", {"image_size": 32}, "heads.head", False, False),
    "small_hf:llama": ("toy", {"seq_len": 8}, "lm_head", False, False),
    "bert": ("base", {"seq_len": 8}, "pooler.dense", True, False),
    "gpt2": ("small", {"seq_len": 8}, "lm_head", True, False),
}
STEPS = ("forward", "train_step")


def training(mode: str) -> bool:
    """The training flag a mode runs under; as_built: as the factory left it, train mode for every family here
    (a module is built in train mode, and none of the factories calls eval())."""
    return MODES[mode].training is not False


def measured(model: str):
    """{(mode, step): record} of every mode and step, and the workload they ran on."""
    size, axis, *_ = FAMILIES[model]
    session = Session()
    records = {}
    for mode in MODES:
        for step in STEPS:
            case = Case(model, size, 2, "cpu", "float32", mode, step, max_time_s=0.01, **axis).validate()
            records[mode, step] = session.measure(case)
    return records, session.workload(case)


def check_family(model: str) -> None:
    size, axis, head, dropout, batchnorm = FAMILIES[model]
    records, workload = measured(model)
    parameters = list(workload.model.parameters())
    head_parameters = len(list(workload.model.get_submodule(head).parameters()))
    for (mode, step), r in records.items():
        where = (model, mode, step, r["error"])
        graph = MODES[mode].records_graph or mode == "as_built"  # as built, every parameter requires grad
        if step == "train_step" and not graph:
            assert r["status"] == "not_applicable", where
            assert r["error"] == f"mode {mode!r}: it records no autograd graph, so there is no train step"
            continue
        assert r["status"] == "ok", where
        assert {k: r[k] for k in axis} == axis and r["batch_size"] == 2
        assert r["peak_bytes"] > 0 and r["time_median_s"] > 0, where
        # the forward's behaviour, observed
        assert r["dropout_active"] is (dropout and training(mode)), where
        assert bool(r["stochastic_ops"]) is (dropout and training(mode)), (where, r["stochastic_ops"])
        assert r["bn_batch_stats"] is (training(mode) if batchnorm else None), where
        assert r["bn_stats_updated"] is (training(mode) if batchnorm else None), where
        assert r["graph_recorded"] is graph, where
        assert (r["saved_bytes"] > 0) is graph, (where, r["saved_bytes"])
        trained = head_parameters if mode == "finetune_head" else len(parameters) if graph else 0
        assert r["grads_computed"] == trained, (where, r["grads_computed"], trained)
        assert r["head_module"] == (head if mode == "finetune_head" else None), where
        if step == "train_step" and MODES[mode].trainable in ("all", "as_built"):
            # at the peak the backward has made every parameter's gradient: their bytes at least
            assert r["peak_bytes"] >= r["param_bytes"], where
    forward = {mode: records[mode, "forward"] for mode in MODES}
    assert forward["eval_no_grad"]["peak_bytes"] <= forward["train"]["peak_bytes"]
    if dropout:  # dropout keeps its masks for the backward
        assert forward["train"]["saved_bytes"] > forward["eval"]["saved_bytes"]
    if model == "vit":  # its head is built at zero (as torchvision's): every output is zero, and so the
        # operators that drew random numbers decide whether it is stochastic (none did: dropout 0.0)
        assert {r["dropout_evidence"] for r in forward.values()} == {"random_ops"}
    if not dropout and not batchnorm:  # eval() changes nothing: the same outputs to the bit
        assert {m: forward[m]["max_abs_diff_vs_eval_no_grad"] for m in ("train", "eval", "no_grad")} == \
            {"train": 0.0, "eval": 0.0, "no_grad": 0.0}


@pytest.mark.parametrize("model", ["resnet", "vit", "small_hf:llama"])
def test_every_mode_and_step_runs_with_the_flags_its_mode_sets(model):
    check_family(model)


@pytest.mark.parametrize("model", ["bert", "gpt2"])
def test_bert_and_gpt2_every_mode_and_step_with_dropout_in_train_mode_only(model):
    check_family(model)
