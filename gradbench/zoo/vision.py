"""torchvision's ResNet and VisionTransformer, written in plain torch: the same modules under the same names
(a torchvision state_dict loads with strict=True), the same initialisation in the same order (the same seed
gives the same weights) and the same forward, without importing torchvision, whose compiled ops need a
torch built to match it. tools/zoo_against_torchvision.py checks this against torchvision itself.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..family import Built

NUM_CLASSES = 1000
PATCH = 16
RESNET_MIN_IMAGE = 32  # five stride-2 steps (stem conv, max pool, layer2..4)

# size -> (block, blocks per stage), as torchvision's resnet18..resnet152
_RESNETS = {"18": ("basic", (2, 2, 2, 2)), "34": ("basic", (3, 4, 6, 3)), "50": ("bottleneck", (3, 4, 6, 3)),
            "101": ("bottleneck", (3, 4, 23, 3)), "152": ("bottleneck", (3, 8, 36, 3))}
# size -> (layers, heads, hidden, mlp): torchvision's vit_b_16 / vit_l_16, and timm's vit_tiny/small_patch16_224
_VITS = {"ti_16": (12, 3, 192, 768), "s_16": (12, 6, 384, 1536), "b_16": (12, 12, 768, 3072),
         "l_16": (24, 16, 1024, 4096)}


def _conv3x3(channels_in: int, channels_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, 3, stride, padding=1, bias=False)


def _conv1x1(channels_in: int, channels_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, channels_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(channels_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # after the branch, as torchvision
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet v1.5: the stride is on the 3x3 conv (conv2), as torchvision's."""

    expansion = 4

    def __init__(self, channels_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(channels_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block: type, layers: tuple[int, ...], num_classes: int = NUM_CLASSES):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MLPBlock(nn.Sequential):
    """Linear, GELU, Dropout, Linear, Dropout (torchvision's MLPBlock, keys mlp.0 and mlp.3)."""

    _version = 2  # torchvision's: its loader then reads these keys as they are

    def __init__(self, hidden: int, mlp: int, dropout: float):
        super().__init__(nn.Linear(hidden, mlp), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mlp, hidden), nn.Dropout(dropout))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


def _layer_norm(hidden: int) -> nn.LayerNorm:
    return nn.LayerNorm(hidden, eps=1e-6)


class EncoderBlock(nn.Module):
    def __init__(self, heads: int, hidden: int, mlp: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.num_heads = heads
        self.ln_1 = _layer_norm(hidden)
        self.self_attention = nn.MultiheadAttention(hidden, heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = _layer_norm(hidden)
        self.mlp = MLPBlock(hidden, mlp, dropout)

    def forward(self, input):
        x = self.ln_1(input)
        x, _ = self.self_attention(query=x, key=x, value=x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, hidden: int, mlp: int, dropout: float,
                 attention_dropout: float):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, hidden, mlp, dropout, attention_dropout))
            for i in range(layers)))
        self.ln = _layer_norm(hidden)

    def forward(self, input):
        return self.ln(self.layers(self.dropout(input + self.pos_embedding)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, layers: int, heads: int, hidden: int, mlp: int,
                 dropout: float = 0.0, attention_dropout: float = 0.0, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden
        self.conv_proj = nn.Conv2d(3, hidden, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(self.seq_length, layers, heads, hidden, mlp, dropout, attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden, num_classes)))
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x):
        n, _, h, w = x.shape
        torch._assert(h == self.image_size and w == self.image_size,
                      f"expected {self.image_size}x{self.image_size} images, got {h}x{w}")
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def classification_loss(output: torch.Tensor, batch) -> torch.Tensor:
    """Cross-entropy against fixed labels 0, 1, 2, ... (mod 1000): no RNG, the same every step."""
    labels = torch.arange(output.shape[0], device=output.device) % NUM_CLASSES
    return F.cross_entropy(output, labels)


def _images(image_size: int):
    return lambda batch_size: torch.randn(batch_size, 3, image_size, image_size)


def _size(family: str, size: str, known: dict) -> None:
    if size not in known:
        raise ValueError(f"unknown {family} size {size!r}; valid sizes: {', '.join(known)}")


def _plain_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resnet(size: str, image_size: int = 224) -> Built:
    """torchvision's resnet{size} (v1.5, 1000 classes, zero_init_residual False) on image_size^2 images."""
    _size("resnet", size, _RESNETS)
    if not _plain_int(image_size) or image_size < RESNET_MIN_IMAGE:
        raise ValueError(f"bad image_size {image_size!r} for resnet; valid: an integer >= {RESNET_MIN_IMAGE}")
    block, layers = _RESNETS[size]
    model = ResNet(BasicBlock if block == "basic" else Bottleneck, layers)
    return Built(model, _images(image_size), classification_loss)


def vit(size: str, image_size: int = 224) -> Built:
    """torchvision's VisionTransformer, patch 16, with the position embedding built for image_size (as
    torchvision's image_size argument does), dropout and attention dropout 0.0 as its defaults."""
    _size("vit", size, _VITS)
    if not _plain_int(image_size) or image_size < PATCH or image_size % PATCH:
        raise ValueError(f"bad image_size {image_size!r} for vit; valid: a positive multiple of the patch "
                         f"size {PATCH} (e.g. 224)")
    layers, heads, hidden, mlp = _VITS[size]
    model = VisionTransformer(image_size, PATCH, layers, heads, hidden, mlp)
    return Built(model, _images(image_size), classification_loss)
