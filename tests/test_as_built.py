"""The model as its factory built it (mode as_built), the modes that override that configuration, and
the head finetune_head trains: observed from what the output depends on, or named with --head."""
import pytest

from gradbench.session import run_case
from gradbench.workload import Workload

FAST = 0.02


def test_as_built_measures_the_users_own_configuration_and_the_other_modes_say_what_they_overrode():
    workload = Workload("user_models:built_partly_frozen", "x", 8, "cpu", "float32")
    as_built = run_case("user_models:built_partly_frozen", "x", 8, mode="as_built", step="train_step",
                        workload=workload, max_time_s=FAST)
    assert as_built["status"] == "ok", as_built["error"]
    assert as_built["grads_computed"] == 2  # only the last Linear's weight and bias: the encoder stays frozen
    assert as_built["mode_overrides"] is None
    forward = run_case("user_models:built_partly_frozen", "x", 8, mode="as_built", workload=workload,
                       max_time_s=FAST)
    assert forward["dropout_active"] is False  # the dropout module was built in eval mode, and stays so
    train = run_case("user_models:built_partly_frozen", "x", 8, mode="train", step="train_step", workload=workload,
                     max_time_s=FAST)
    assert train["grads_computed"] == 4
    assert "made 2 parameter(s) trainable that the model was built frozen (0.weight, 0.bias)" in \
        train["mode_overrides"] and "put 1 module(s) built in eval mode in train mode (1)" in train["mode_overrides"]
    # built-in models are built trainable and in train mode: no mode overrides anything of theirs
    assert run_case("mlp", "tiny", 8, mode="eval_no_grad", max_time_s=FAST)["mode_overrides"] is None


def test_as_built_has_no_train_step_when_nothing_requires_grad():
    record = run_case("user_models:built_all_frozen", "x", 4, mode="as_built", step="train_step", max_time_s=FAST)
    assert record["status"] == "not_applicable" and "no parameter of the model as built requires grad" in \
        record["error"]


def test_finetune_head_trains_the_linear_the_output_depends_on_not_the_last_registered():
    workload = Workload("user_models:aux_head", "x", 8, "cpu", "float32")
    record = run_case("user_models:aux_head", "x", 8, mode="finetune_head", step="train_step", workload=workload,
                      max_time_s=FAST)
    assert record["status"] == "ok", record["error"]
    assert record["head_module"] == "out" and record["grads_computed"] == 2
    named = run_case("user_models:aux_head", "x", 8, mode="finetune_head", step="train_step", workload=workload,
                     max_time_s=FAST, head="body")
    assert named["status"] == "ok" and named["head_module"] == "body" and named["head"] == "body"
    off_path = run_case("user_models:aux_head", "x", 8, mode="finetune_head", step="train_step", workload=workload,
                        max_time_s=FAST, head="aux")
    assert off_path["status"] == "error" and "(finetune_head trained 'aux')" in off_path["error"]


def test_an_unknown_head_is_refused_naming_the_linear_modules():
    record = run_case("user_models:aux_head", "x", 8, mode="finetune_head", max_time_s=FAST, head="nope")
    assert record["status"] == "error"
    assert "--head 'nope'" in record["error"] and "body, out, aux" in record["error"]
    with pytest.raises(ValueError, match="bad head ''"):
        run_case("mlp", "tiny", 8, mode="finetune_head", head="")


class _Checkpointed:
    """pre -> a checkpointed segment around mid -> head; the output also as a complex tensor, or in a dict
    beside an integer tensor."""

    @staticmethod
    def build(reentrant: bool, output: str = "tensor"):
        import torch
        from torch import nn
        from torch.utils.checkpoint import checkpoint

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.pre, self.mid, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

            def forward(self, x):
                h = checkpoint(lambda h: torch.tanh(self.mid(h)), self.pre(x), use_reentrant=reentrant)
                y = self.head(h)
                if output == "complex":
                    return torch.complex(y, torch.zeros_like(y))
                return {"labels": torch.zeros(2, dtype=torch.long), "logits": y} if output == "dict" else y

        return Net()


@pytest.mark.parametrize("reentrant, output", [
    (False, "tensor"),  # was 'mid': the checkpoint's recomputation in the backward ran mid's forward hook last
    (True, "tensor"),  # was: RuntimeError, reentrant checkpointing refuses autograd.grad
    (False, "complex"),  # was: ValueError, the output depends on no nn.Linear's weight
    (False, "dict"),
])
def test_output_head_is_the_last_linear_on_the_output_path_whatever_the_model_does(reentrant, output):
    import warnings

    import torch

    from gradbench.modes import output_head

    model = _Checkpointed.build(reentrant, output)
    x = torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reentrant checkpointing warns that no input requires grad
        assert output_head(model, lambda: model(x)) == "head"


def test_output_head_leaves_every_grad_and_requires_grad_as_it_found_them():
    import warnings

    import torch

    from gradbench.modes import output_head

    model = _Checkpointed.build(reentrant=True)
    model.pre.bias.requires_grad_(False)
    held = torch.full_like(model.head.weight, 3.0)
    model.head.weight.grad = held
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert output_head(model, lambda: model(torch.randn(2, 4))) == "head"
    assert model.head.weight.grad is held and torch.equal(held, torch.full_like(held, 3.0))
    assert [n for n, p in model.named_parameters() if p.grad is not None] == ["head.weight"]
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["pre.bias"]
