"""Behaviour by observation: dropout_active is true exactly when the forward is stochastic in that
mode, whatever produces the randomness, in all nine modes."""
import pytest

import gradbench
from gradbench.modes import MODES
from gradbench.workload import Workload

FAST = 0.02
# model -> whether each mode's forward is stochastic, as a function of the mode's training flag
DROPOUT_KINDS = ["inplace_dropout", "functional_dropout", "sdpa_dropout", "mha_dropout", "rnn_dropout"]
TRUTH = {
    **{kind: lambda training: training for kind in DROPOUT_KINDS},
    "deterministic": lambda training: False,
    "always_noisy": lambda training: True,  # noise that ignores the training flag: eval modes too
    "private_generator": lambda training: training,  # its own torch.Generator: reseeding does not repeat it
    "drifting": lambda training: False,  # changes from call to call, but consumes no random numbers
}
# model -> what decides dropout_active: outputs that repeat under one seed, or else the random ops observed
EVIDENCE = {
    **{model: lambda training: "outputs" for model in TRUTH},
    "private_generator": lambda training: "random_ops" if training else "outputs",  # does not repeat when on
    "drifting": lambda training: "random_ops",  # never repeats
}


@pytest.fixture(scope="module")
def records():
    out = {}
    for model in TRUTH:
        workload = Workload(f"zoo:{model}", "x", 4, "cpu", "float32")
        for mode in MODES:
            out[model, mode] = gradbench.run_case(model=f"zoo:{model}", size="x", batch_size=4, mode=mode,
                                                  max_time_s=FAST, workload=workload)
    return out


@pytest.mark.parametrize("model", list(TRUTH))
@pytest.mark.parametrize("mode", list(MODES))
def test_dropout_active_is_observed_stochasticity(records, model, mode):
    r = records[model, mode]
    training = True if MODES[mode].training is None else MODES[mode].training  # as_built: the zoo builds in train
    assert r["status"] == "ok", r["error"]
    assert r["dropout_active"] is TRUTH[model](training)
    assert r["dropout_evidence"] == EVIDENCE[model](training)
    if r["dropout_active"]:
        assert r["stochastic_ops"], "a stochastic forward names the operators that drew random numbers"
        if not TRUTH[model](False):  # eval_no_grad, the reference, is deterministic for this model
            assert r["max_abs_diff_vs_eval_no_grad"] > 0
    elif model != "drifting":
        assert r["stochastic_ops"] == []


def test_stochastic_ops_name_the_operator_that_drew(records):
    assert records["inplace_dropout", "train"]["stochastic_ops"] == ["aten::bernoulli_"]
    assert records["always_noisy", "eval_no_grad"]["stochastic_ops"] == ["aten::randn_like"]
    assert records["private_generator", "train"]["stochastic_ops"] == ["aten::rand"]
    # under inference_mode the dispatcher sees the composite operators whole
    assert records["rnn_dropout", "inference_mode"]["stochastic_ops"] == ["aten::lstm"]
    assert records["sdpa_dropout", "inference_mode"]["stochastic_ops"] == ["aten::scaled_dot_product_attention"]


@pytest.mark.parametrize("model", ["diverged_weights", "zero_head", "returns_none"])
def test_outputs_that_cannot_be_compared_leave_it_to_the_random_ops(model):
    """NaN compares unequal to itself (so equal_nan), a zero head makes every output zero whatever dropout drew
    (a fresh torchvision ViT with dropout: issue 27 found it called not stochastic) and None cannot be compared:
    the outputs of two seeds say nothing there, and aten::bernoulli_ having run (or not) decides."""
    workload = Workload(f"zoo:{model}", "x", 4, "cpu", "float32")
    for mode in ("train", "eval", "no_grad", "eval_no_grad", "inference_mode"):
        r = gradbench.run_case(model=f"zoo:{model}", size="x", batch_size=4, mode=mode, max_time_s=FAST,
                               workload=workload)
        assert r["status"] == "ok", r["error"]
        assert r["dropout_active"] is MODES[mode].training, (mode, r["stochastic_ops"])
        assert r["dropout_evidence"] == "random_ops"


def test_built_in_models_dropout_follows_the_training_flag():
    for family in ("mlp", "cnn", "transformer"):
        workload = Workload(family, "tiny", 4, "cpu", "float32")
        for mode in ("no_grad", "eval", "frozen_eval"):
            r = gradbench.run_case(model=family, size="tiny", batch_size=4, mode=mode, max_time_s=FAST,
                                   workload=workload)
            assert r["dropout_active"] is MODES[mode].training, (family, mode)


def test_dataclass_outputs_are_observed_too():
    r = gradbench.run_case(model="user_models:dataclass_output", size="x", batch_size=4, mode="train",
                           step="train_step", max_time_s=FAST)
    assert r["status"] == "ok", r["error"]
    assert r["dropout_active"] is True and r["graph_recorded"] is True and r["grads_computed"] == 2


def test_a_model_that_fails_only_in_eval_fails_only_its_eval_cases():
    workload = Workload("user_models:fails_in_eval", "x", 4, "cpu", "float32")
    train = gradbench.run_case(model="user_models:fails_in_eval", size="x", batch_size=4, mode="train",
                               max_time_s=FAST, workload=workload)
    assert train["status"] == "ok" and train["max_abs_diff_vs_eval_no_grad"] is None
    broken = gradbench.run_case(model="user_models:fails_in_eval", size="x", batch_size=4, mode="eval_no_grad",
                                max_time_s=FAST, workload=workload)
    assert broken["status"] == "error" and "boom in eval" in broken["error"]


@pytest.mark.parametrize("reference_shape", [(1, 3), (5, 3)])  # broadcast to a number; raised
def test_outputs_of_another_shape_have_no_difference_rather_than_a_broadcast_one(reference_shape):
    import torch

    from gradbench.measure.behaviour import default_generators, probe_behaviour

    model = torch.nn.Linear(3, 3)
    x = torch.ones(4, 3)
    r = probe_behaviour(model, lambda: model(x), [torch.zeros(reference_shape)], 0,
                        default_generators(torch.device("cpu")))
    assert r["max_abs_diff_vs_eval_no_grad"] is None


def test_a_probe_forward_that_raises_leaves_the_random_streams_as_they_were():
    import random

    import numpy as np
    import torch

    from gradbench.measure.behaviour import default_generators, probe_behaviour

    model = torch.nn.Linear(3, 3)
    calls = []

    def forward():
        calls.append(1)
        if len(calls) == 2:  # the second probe, under seed + 1
            raise RuntimeError("boom")
        return model(torch.ones(2, 3))

    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    with pytest.raises(RuntimeError, match="boom"):
        probe_behaviour(model, forward, None, 0, default_generators(torch.device("cpu")))
    assert (torch.rand(1), random.random(), np.random.rand()) == expected
