import pytest
import torch

from gradbench.models import SIZES, TOY_FAMILIES, build_model, input_batch, parameter_count

TOYS = [f.name for f in TOY_FAMILIES]
CPU = torch.device("cpu")

TARGETS = {"tiny": 1e5, "small": 1e6, "medium": 1e7}


@pytest.mark.parametrize("family", TOYS)
@pytest.mark.parametrize("size", list(TARGETS))
def test_sizes_are_roughly_their_target(family, size):
    model, _ = build_model(family, size)
    assert 0.7 * TARGETS[size] < parameter_count(model) < 1.3 * TARGETS[size]


@pytest.mark.parametrize("family", TOYS)
def test_every_family_has_dropout_and_a_norm(family):
    model, make_input = build_model(family, "tiny")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Dropout" in kinds
    assert kinds & {"BatchNorm1d", "BatchNorm2d", "LayerNorm"}
    assert model(make_input(2)).shape == (2, 10)


def test_same_seed_same_weights_and_input():
    a, make_a = build_model("cnn", "tiny", seed=3)
    b, make_b = build_model("cnn", "tiny", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    xa = input_batch(make_a, 2, CPU, torch.float32, seed=3)
    xb = input_batch(make_b, 2, CPU, torch.float32, seed=3)
    assert torch.equal(xa.args[0], xb.args[0]) and xa.kwargs == {} and xa.batch is xa.args[0]
    c, _ = build_model("cnn", "tiny", seed=4)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_user_model_from_module_and_from_file(fixtures_dir):
    model, make_input = build_model("user_models:two_linear", "anything")
    assert isinstance(model, torch.nn.Sequential)
    model2, _ = build_model(f"{fixtures_dir}/user_models.py:two_linear", "small")
    assert parameter_count(model2) == parameter_count(model)
    inputs = input_batch(build_model("user_models:tuple_input", "x").make_input, 3, CPU, torch.bfloat16)
    assert len(inputs.args) == 2 and inputs.args[0].dtype == torch.bfloat16 and inputs.batch == inputs.args


@pytest.mark.parametrize(
    "spec, message",
    [
        ("user_models:wrong_return", "must return \\(nn.Module, make_input callable\\) or \\(nn.Module, make_input, "
                                     "loss callable\\)"),
        ("user_models:raises", "failed for size.*factory exploded"),
        ("user_models:missing", "has no callable 'missing'"),
        ("broken_import:model", "cannot import model.*this_module_does_not_exist"),
        ("no_such_module_xyz:f", "cannot import model"),
        ("/nowhere/model.py:f", "does not exist"),
    ],
)
def test_broken_factory_is_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        build_model(spec, "tiny")


def test_bad_model_and_size_name_valid_values():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9'; valid models: mlp, cnn, transformer, resnet, vit, "
                                         r"bert, gpt2, llama, or MODULE:FUNCTION"):
        build_model("resnet9", "tiny")
    with pytest.raises(ValueError, match=r"unknown size 'huge' for mlp; valid sizes: " + ", ".join(SIZES) + "$"):
        build_model("mlp", "huge")
    with pytest.raises(ValueError, match=r"unknown size 'tiny' for bert; valid sizes: base, large$"):
        build_model("bert", "tiny")
