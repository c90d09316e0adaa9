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


def test_a_dict_from_make_input_is_passed_as_keywords_with_the_seq_len():
    from gradbench.workload import Workload

    built = build_model("user_models:keyword_inputs", "x", seq_len=5)
    batch = input_batch(built.make_input, 3, CPU, torch.bfloat16)
    assert batch.args == () and list(batch.kwargs) == ["input_ids", "attention_mask"]
    assert batch.kwargs["input_ids"].shape == (3, 5) and batch.kwargs["input_ids"].dtype == torch.int64
    assert batch.kwargs["attention_mask"].dtype == torch.bfloat16  # floats cast, integers kept
    assert batch.batch == batch.kwargs and not any(t.requires_grad for t in batch.tensors())
    workload = Workload("user_models:keyword_inputs", "x", 3, "cpu", "float32", seq_len=7)
    assert workload.key == ("user_models:keyword_inputs", "x", 3, "cpu", "float32", 0, 7, None)
    assert workload.inputs.kwargs["input_ids"].shape == (3, 7)
    assert workload.forward().logits.shape == (3, 3)  # a dataclass output, as Hugging Face's
    held = {id(t) for t in workload.held_tensors()}
    assert {id(t) for t in workload.inputs.kwargs.values()} <= held
    default = Workload("user_models:keyword_inputs", "x", 3, "cpu", "float32")  # no seq_len: its own default
    assert default.inputs.kwargs["input_ids"].shape == (3, 6)


def test_make_input_without_a_seq_len_keyword_is_refused_naming_the_model():
    with pytest.raises(ValueError, match=r"^make_input of 'user_models:two_linear' takes no seq_len; give it a "
                                         r"seq_len keyword or drop --seq-len$"):
        build_model("user_models:two_linear", "x", seq_len=8)


def test_make_input_returning_anything_else_is_one_line():
    with pytest.raises(ValueError, match=r"^make_input must return a tensor, a tuple of tensors or a dict of tensors; "
                                         r"got float in dict$"):
        input_batch(build_model("user_models:dict_with_number", "x").make_input, 2, CPU, torch.float32)
    with pytest.raises(ValueError, match=r"^make_input must return a tensor, a tuple of tensors or a dict of tensors; "
                                         r"got str$"):
        input_batch(lambda b: "text", 2, CPU, torch.float32)


def test_a_factory_s_loss_is_the_train_step_s_and_its_gradients_are_those_of_the_loss():
    """with_loss returns (model, make_input, loss): loss = sum(W x + b) - sum(x), so dW[i] = sum of x over the
    batch for every output i, and db = the batch size."""
    import user_models

    from gradbench.modes import apply_mode
    from gradbench.workload import Workload, make_step

    user_models.LOSS_CALLS.clear()
    workload = Workload("user_models:with_loss", "x", 4, "cpu", "float32")
    x = workload.inputs.batch
    with apply_mode(workload.model, "train") as applied:
        step = make_step(workload, applied, "train_step")
        step.run()
    [(output, batch)] = user_models.LOSS_CALLS
    assert batch is x and output.shape == (4, 2)
    assert torch.allclose(workload.model.weight.grad, x.sum(0).expand(2, 4))
    assert torch.equal(workload.model.bias.grad, torch.full((2,), 4.0))


def test_toys_keep_their_weights_and_inputs():
    """The toy transformer takes seq_len now; at its default (32) it is what it was: same weights, same batch."""
    model, make_input = build_model("transformer", "tiny", seed=0)
    again, make_again = build_model("transformer", "tiny", seed=0, seq_len=32)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    a, b = (input_batch(m, 2, CPU, torch.float32).args[0] for m in (make_input, make_again))
    assert a.shape == (2, 32, 64) and torch.equal(a, b)
    assert input_batch(build_model("transformer", "tiny", seq_len=8).make_input, 2, CPU, torch.float32) \
        .args[0].shape == (2, 8, 64)
    # the sums gradbench 0.4 gave (its build_model, then torch.manual_seed(1) and make_input(2)), in float64
    assert float(sum(p.detach().double().sum() for p in model.parameters())) == pytest.approx(288.02546974708457,
                                                                                              abs=1e-9)
    assert float(a.double().sum()) == pytest.approx(35.89402191310455, abs=1e-9)
    mlp = build_model("mlp", "tiny", seed=0)
    assert mlp.loss is None and parameter_count(mlp.model) == 102_250


def test_a_family_whose_extra_is_missing_says_how_to_install_it(monkeypatch):
    from gradbench import models

    def build(size, seq_len):
        raise ModuleNotFoundError("No module named 'transformers'")

    monkeypatch.setitem(models.FAMILIES, "bert", models.Family("bert", ("base",), build, inputs="seq_len",
                                                                default_input=128, extra="zoo"))
    with pytest.raises(ValueError, match=r"^model 'bert' needs the zoo extra: pip install 'gradbench\[zoo\]' "
                                         r"\(No module named 'transformers'\)$"):
        build_model("bert", "base")


@pytest.mark.parametrize("returned, said", [
    (lambda out: out, r"a tensor of shape \(4, 2\) and dtype torch.float32"),
    (lambda out: 3, r"int"),
    (lambda out: out.sum().long(), r"a tensor of shape \(\) and dtype torch.int64"),
])
def test_a_factory_loss_that_is_no_scalar_is_named_in_one_line(returned, said):
    from gradbench.workload import Workload

    workload = Workload("user_models:with_loss", "x", 4, "cpu", "float32")
    workload.loss = lambda output, batch: returned(output)
    with pytest.raises(ValueError, match=rf"^the loss of model 'user_models:with_loss' returned {said}; it must "
                                         r"return a floating-point scalar tensor$"):
        workload.loss_from(workload.forward())
