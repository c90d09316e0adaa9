import pytest
import torch

from gradbench.models import build_model
from gradbench.modes import CORE_MODES, MODES, apply_mode, get_mode


def _state(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [b.clone() for b in model.buffers()],
    )


def _same(a, b):
    return a[0] == b[0] and a[1] == b[1] and all(torch.equal(x, y) for x, y in zip(a[2], b[2]))


def test_ten_modes_match_design_table():
    table = {
        "train": (True, "enabled", "all"), "eval": (False, "enabled", "all"),
        "no_grad": (True, "no_grad", "all"), "eval_no_grad": (False, "no_grad", "all"),
        "frozen": (True, "enabled", "none"), "frozen_eval": (False, "enabled", "none"),
        "inference_mode": (True, "inference_mode", "all"),
        "eval_inference_mode": (False, "inference_mode", "all"),
        "finetune_head": (True, "enabled", "head"), "as_built": (None, "enabled", "as_built"),
    }
    assert {n: (m.training, m.grad_mode, m.trainable) for n, m in MODES.items()} == table
    assert CORE_MODES == ("train", "eval", "no_grad", "eval_no_grad", "frozen")


def test_apply_sets_flags_and_grad_context():
    model, make_input = build_model("mlp", "tiny")
    with apply_mode(model, "frozen_eval") as applied:
        assert not model.training and not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    with apply_mode(model, "finetune_head") as applied:
        trainable = applied.trainable_parameters()
        assert [p.shape for p in trainable] == [model.head.weight.shape, model.head.bias.shape]
    with apply_mode(model, "inference_mode") as applied:
        assert applied.run(torch.is_inference_mode_enabled)
    with apply_mode(model, "no_grad") as applied:
        assert not applied.run(torch.is_grad_enabled) and model.training


@pytest.mark.parametrize("family", ["mlp", "cnn", "transformer"])
def test_modes_in_any_order_restore_everything(family):
    model, make_input = build_model(family, "tiny")
    x = make_input(4)
    # A mixed starting state: some modules in eval, one parameter frozen.
    model.train()
    list(model.modules())[1].eval()
    next(model.parameters()).requires_grad_(False)
    before = _state(model)
    for name in ["train", "eval_inference_mode", "finetune_head", "no_grad", "frozen", "eval", "inference_mode"]:
        with apply_mode(model, name) as applied:
            applied.run(model, x)  # updates BatchNorm statistics in train-flag modes
        assert _same(before, _state(model)), name


def test_undo_after_failed_forward_still_restores():
    model, _ = build_model("mlp", "tiny")
    before = _state(model)
    with pytest.raises(ValueError):
        with apply_mode(model, "train") as applied:
            applied.run(model, torch.randn(1, 256))  # BatchNorm refuses batch size 1 in training
    assert _same(before, _state(model))


def test_finetune_head_without_linear_is_clear_error_and_changes_nothing():
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="finetune_head.*nn.Linear"):
        apply_mode(model, "finetune_head")
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_unknown_mode_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown mode 'evil'.*eval_no_grad"):
        get_mode("evil")
