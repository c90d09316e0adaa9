import math

import pytest
import torch

from gradbench import state
from gradbench.models import Built, parameter_count
from gradbench.zoo import RESNET_SIZES, VIT_SIZES
from gradbench.zoo.vision import resnet, vit

# torchvision's published num_params (resnet18..152, vit_b_16, vit_l_16) and timm's vit_tiny/small_patch16_224
PUBLISHED = {
    ("resnet", "18"): 11_689_512, ("resnet", "34"): 21_797_672, ("resnet", "50"): 25_557_032,
    ("resnet", "101"): 44_549_160, ("resnet", "152"): 60_192_808,
    ("vit", "ti_16"): 5_717_416, ("vit", "s_16"): 22_050_664, ("vit", "b_16"): 86_567_656,
    ("vit", "l_16"): 304_326_632,
}
BUILDERS = {"resnet": resnet, "vit": vit}


def test_every_size_is_counted():
    assert set(PUBLISHED) == {("resnet", s) for s in RESNET_SIZES} | {("vit", s) for s in VIT_SIZES}


@pytest.mark.parametrize("family, size", list(PUBLISHED))
def test_parameter_count_is_the_published_one(family, size):
    with torch.device("meta"):
        built = BUILDERS[family](size)
    assert isinstance(built, Built)
    assert parameter_count(built.model) == PUBLISHED[family, size]


def test_resnet18_trains_one_step_with_gradients_on_every_parameter():
    torch.manual_seed(0)
    built = resnet("18", image_size=64)
    batch = built.make_input(2)
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == torch.float32
    output = built.model(batch)
    assert output.shape == (2, 1000)
    loss = built.loss(output, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in built.model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_resnet_has_batchnorm_so_eval_changes_its_output():
    torch.manual_seed(0)
    model = resnet("18", image_size=32).model
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 20
    batch = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        trained = model.train()(batch)
        evaluated = model.eval()(batch)
    assert not torch.allclose(trained, evaluated)


def test_resnet_strides_as_torchvision():
    assert resnet("18", image_size=32).model.layer2[0].conv1.stride == (2, 2)  # BasicBlock: on its first 3x3
    bottleneck = resnet("50", image_size=32).model.layer2[0]
    assert (bottleneck.conv1.stride, bottleneck.conv2.stride) == ((1, 1), (2, 2))  # v1.5: on the 3x3


def test_vit_tiny_at_32_starts_at_chance_with_its_zero_head():
    torch.manual_seed(0)
    built = vit("ti_16", image_size=32)
    assert built.model.encoder.pos_embedding.shape == (1, 2 * 2 + 1, 192)
    batch = built.make_input(2)
    output = built.model(batch)
    assert output.shape == (2, 1000)
    loss = built.loss(output, batch)
    assert loss.item() == pytest.approx(math.log(1000), abs=1e-6)  # torchvision's zero head: uniform logits
    loss.backward()
    assert all(p.grad is not None for p in built.model.parameters())
    assert built.model.heads.head.weight.grad.abs().sum() > 0


def test_loss_labels_are_fixed_and_wrap_at_1000_classes():
    output = torch.zeros(1002, 1000)
    output[torch.arange(1002), torch.arange(1002) % 1000] = 100.0
    assert vit("ti_16", image_size=16).loss(output, None).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("builder, image_size, message", [
    (resnet, 31, "bad image_size 31 for resnet; valid: an integer >= 32"),
    (resnet, 64.0, "bad image_size 64.0 for resnet; valid: an integer >= 32"),
    (vit, 230, "bad image_size 230 for vit; valid: a positive multiple of the patch size 16 (e.g. 224)"),
    (vit, 0, "bad image_size 0 for vit; valid: a positive multiple of the patch size 16 (e.g. 224)"),
])
def test_bad_image_sizes_are_refused_saying_what_is_valid(builder, image_size, message):
    with pytest.raises(ValueError) as error:
        builder("18" if builder is resnet else "ti_16", image_size=image_size)
    assert str(error.value) == message


def test_unknown_sizes_are_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown resnet size '200'; valid sizes: 18, 34, 50, 101, 152$"):
        resnet("200")
    with pytest.raises(ValueError, match=r"^unknown vit size 'h_14'; valid sizes: ti_16, s_16, b_16, l_16$"):
        vit("h_14")


@pytest.mark.parametrize("builder, size, image_size", [(resnet, "18", 32), (vit, "ti_16", 32)])
def test_building_leaves_global_state_alone(builder, size, image_size):
    torch.manual_seed(0)
    guard = state.CleanState(state.expected_state(0))
    with guard:
        builder(size, image_size=image_size).make_input(1)
    assert guard.changes == []


def test_same_seed_same_weights():
    def weights():
        torch.manual_seed(5)
        return [p.detach().clone() for p in vit("ti_16", image_size=32).model.parameters()]
    a, b = weights(), weights()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
