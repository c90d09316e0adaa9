"""Built-in model families and sizes (the toys here, the reference families in zoo/), and loading user models
given as MODULE:FUNCTION.

Every toy family has Dropout and a normalisation layer, so that model.eval() changes something; the reference
families switch what their published architecture has (docs/models.md: ViT and Llama nothing).
A model factory returns ``(model, make_input)`` or ``(model, make_input, loss)``: ``make_input(batch_size)``
builds one input batch (a tensor, a tuple of tensors passed positionally, or a dict of tensors passed as
keywords) on the CPU in float32, gradbench moves it; with --seq-len it is called as
``make_input(batch_size, seq_len=L)``. ``loss(output, batch)`` is the train step's loss.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .family import Built, Family
from .record import short_repr

SIZES = ("tiny", "small", "medium", "large")
NUM_CLASSES = 10


class MLP(nn.Module):
    """Blocks of Linear -> BatchNorm1d -> ReLU -> Dropout, then a Linear head."""

    def __init__(self, in_features: int, width: int, blocks: int, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        features = in_features
        for _ in range(blocks):
            layers += [nn.Linear(features, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.body(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out)
            )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet for 3x32x32 inputs: a stem, three stages of residual blocks, Dropout, head."""

    def __init__(self, width: int, blocks_per_stage: int, dropout: float = 0.1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages: list[nn.Module] = []
        channels = width
        for stage, factor in enumerate((1, 2, 4)):
            out = width * factor
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(ResidualBlock(channels, out, stride))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, NUM_CLASSES)

    def forward(self, x):
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.head(self.dropout(x))


class TransformerClassifier(nn.Module):
    """nn.TransformerEncoder (batch_first, even head count, so the fast path is eligible), mean pool, head."""

    def __init__(self, d_model: int, heads: int, layers: int, dropout: float = 0.1):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=dropout, batch_first=True)
        # Nested tensors only matter with a padding mask; disabling them avoids a warning and changes nothing here.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


MLP_IN = 256
CNN_SHAPE = (3, 32, 32)
SEQ_LEN = 32

# size -> constructor arguments; each row is about 0.1M, 1M, 10M and 100M parameters.
_MLP_SIZES = {"tiny": (144, 4), "small": (528, 4), "medium": (1536, 5), "large": (4096, 7)}
_CNN_SIZES = {"tiny": (18, 1), "small": (38, 2), "medium": (98, 3), "large": (264, 4)}
_TRANSFORMER_SIZES = {"tiny": (64, 2, 2), "small": (128, 4, 5), "medium": (384, 6, 6), "large": (1024, 16, 8)}


def _mlp(size: str) -> Built:
    width, blocks = _MLP_SIZES[size]
    return Built(MLP(MLP_IN, width, blocks), lambda batch_size: torch.randn(batch_size, MLP_IN))


def _cnn(size: str) -> Built:
    width, blocks = _CNN_SIZES[size]
    return Built(ResNet(width, blocks), lambda batch_size: torch.randn(batch_size, *CNN_SHAPE))


def _transformer(size: str, seq_len: int = SEQ_LEN) -> Built:
    d_model, heads, layers = _TRANSFORMER_SIZES[size]
    return Built(TransformerClassifier(d_model, heads, layers),
                 lambda batch_size: torch.randn(batch_size, seq_len, d_model))


TOY_FAMILIES = (
    Family("mlp", SIZES, _mlp, description="Linear-BatchNorm1d-ReLU-Dropout blocks on 256 features"),
    Family("cnn", SIZES, _cnn, description="a small ResNet (BatchNorm2d, Dropout) on 3x32x32 images"),
    Family("transformer", SIZES, _transformer, inputs="seq_len", default_input=SEQ_LEN,
           description="nn.TransformerEncoder (fast path eligible), mean pool; inputs are embeddings"),
)


def _families() -> dict[str, Family]:
    from .zoo import ZOO_FAMILIES

    return {f.name: f for f in (*TOY_FAMILIES, *ZOO_FAMILIES)}


FAMILIES: dict[str, Family] = _families()
BUILTIN_MODELS: dict[str, Callable] = {f.name: f.build for f in FAMILIES.values()}


def is_user_model(name: str) -> bool:
    return ":" in name


# A model or size name is printed, tabulated, and read back from files others wrote: printable text of a
# sane length, and a size is no path (a user model's size goes to its factory as it is).
NAME_MAX = 256
SIZE_MAX = 64
NAME_RULE = f"printable, at most {NAME_MAX} characters"
SIZE_RULE = f"printable, at most {SIZE_MAX} characters, no / or \\, not starting with a dot"


def plain_model_name(name) -> bool:
    return isinstance(name, str) and 0 < len(name) <= NAME_MAX and name.isprintable()


def plain_size_name(size) -> bool:
    return (isinstance(size, str) and 0 < len(size) <= SIZE_MAX and size.isprintable()
            and not size.startswith(".") and "/" not in size and "\\" not in size)


def validate_model_name(name: str) -> None:
    if name in BUILTIN_MODELS or (plain_model_name(name) and is_user_model(name)):
        return
    raise ValueError(
        f"unknown model {short_repr(name)}; valid models: {', '.join(BUILTIN_MODELS)}, "
        f"or MODULE:FUNCTION / path/to/file.py:FUNCTION ({NAME_RULE})"
    )


def valid_sizes(model: str) -> tuple[str, ...]:
    """A built-in family's sizes (SIZES for a name that is no family)."""
    family = FAMILIES.get(model)
    return family.sizes if family is not None else SIZES


def validate_size(model: str, size: str) -> None:
    if is_user_model(model):
        if plain_size_name(size):
            return
        raise ValueError(f"bad size {short_repr(size)} for a user model; a size is any name {SIZE_RULE}")
    if size in valid_sizes(model):
        return
    raise ValueError(f"unknown size {short_repr(size)} for {model}; valid sizes: {', '.join(valid_sizes(model))}")


def _split_spec(spec: str) -> tuple[str, str, bool]:
    """'pkg.mod:fn' or 'path/to/file.py:fn' -> (target, function, is_file)."""
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise ValueError(f"bad model {spec!r}; expected MODULE:FUNCTION or path/to/file.py:FUNCTION")
    return target, func_name, target.endswith(".py") or os.sep in target


def check_user_model_spec(spec: str) -> None:
    """Raise ValueError if a user model's file or module cannot be found, without running its code:
    importing it is the workers' job, under the case timeout (its import may exit, hang or crash)."""
    target, _, is_file = _split_spec(spec)
    if is_file:
        if not os.path.isfile(target):
            raise ValueError(f"model file {target!r} does not exist")
        return
    top = target.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError(f"cannot import model {spec!r}: no module named {top!r} (is it on PYTHONPATH, "
                         "or did you mean path/to/file.py:FUNCTION?)")


_FACTORIES: dict[str, Callable | ValueError] = {}  # per process: a module is imported (or fails) once


def load_factory(spec: str) -> Callable:
    """The user's model function; its module imported once per process. An import that raises, or
    calls sys.exit, is a ValueError naming the model (and raised again for its later cases)."""
    if spec not in _FACTORIES:
        try:
            _FACTORIES[spec] = _import_factory(spec)
        except ValueError as exc:
            _FACTORIES[spec] = exc
    found = _FACTORIES[spec]
    if isinstance(found, ValueError):
        raise found
    return found


def _import_factory(spec: str) -> Callable:
    target, func_name, is_file = _split_spec(spec)
    try:
        if is_file:
            if not os.path.isfile(target):
                raise ValueError(f"model file {target!r} does not exist")
            name = "gradbench_user_" + os.path.splitext(os.path.basename(target))[0]
            module_spec = importlib.util.spec_from_file_location(name, target)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ValueError:
        raise
    except SystemExit as exc:  # a script's sys.exit() at import must not end the measuring process
        raise ValueError(f"cannot import model {spec!r}: its module called sys.exit({exc.code!r}) at import") \
            from None
    except Exception as exc:  # the user's module failed to import: say so in one line
        raise ValueError(f"cannot import model {spec!r}: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: {target!r} has no callable {func_name!r}")
    return factory


def build_model(name: str, size: str, seed: int = 0, seq_len: int | None = None,
                image_size: int | None = None) -> Built:
    """Build a built-in or user model with a fixed seed. A family is built at the input axis it takes (the value
    given, or its default); a user model's make_input is given ``seq_len`` when there is one."""
    validate_model_name(name)
    validate_size(name, size)
    torch.manual_seed(seed)
    if not is_user_model(name):
        return _build_family(FAMILIES[name], size, seq_len, image_size)
    factory = load_factory(name)
    try:
        result = factory(size=size)
    except SystemExit as exc:  # as at import: a script's sys.exit() must not end the measuring process
        raise ValueError(f"model {name!r} called sys.exit({exc.code!r}) for size {size!r}") from None
    except Exception as exc:
        raise ValueError(f"model {name!r} failed for size {size!r}: {type(exc).__name__}: {exc}") from exc
    built = _as_built(name, result)
    if seq_len is None:
        return built
    if not _takes_keyword(built.make_input, "seq_len"):
        raise ValueError(f"make_input of {name!r} takes no seq_len; give it a seq_len keyword or drop --seq-len")
    return Built(built.model, functools.partial(built.make_input, seq_len=seq_len), built.loss)


def family_axis(family: Family, seq_len: int | None, image_size: int | None) -> dict:
    """The keyword a family's build takes for its input axis: the value given, or the family's default (none for
    a family with fixed inputs)."""
    if family.inputs is None:
        return {}
    given = {"seq_len": seq_len, "image_size": image_size}[family.inputs]
    return {family.inputs: family.default_input if given is None else given}


def _build_family(family: Family, size: str, seq_len: int | None, image_size: int | None) -> Built:
    """The family's Built at its axis; a family whose extra is not installed is a ValueError saying how to."""
    try:
        return family.build(size, **family_axis(family, seq_len, image_size))
    except ImportError as exc:
        if family.extra is None:
            raise
        raise ValueError(f"model {family.name!r} needs the {family.extra} extra: pip install "
                         f"'gradbench[{family.extra}]' ({exc})") from None


def _as_built(name: str, result) -> Built:
    """A factory's (model, make_input) or (model, make_input, loss), or a Built, as a Built."""
    if isinstance(result, Built):
        result = (result.model, result.make_input, result.loss)
    if (
        not isinstance(result, tuple)
        or len(result) not in (2, 3)
        or not isinstance(result[0], nn.Module)
        or not callable(result[1])
        or (len(result) == 3 and result[2] is not None and not callable(result[2]))
    ):
        raise ValueError(
            f"model {name!r} must return (nn.Module, make_input callable) or (nn.Module, make_input, "
            f"loss callable); got {type(result).__name__}"
        )
    return Built(*result)


def _takes_keyword(function: Callable, name: str) -> bool:
    """``function`` accepts ``name=`` (a parameter of that name, or **kwargs); True where it cannot be told."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any((p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or p.kind == p.VAR_KEYWORD
               for p in parameters)


@dataclass(frozen=True)
class InputBatch:
    """One input batch on its device: ``args`` passed positionally, ``kwargs`` as keywords, and ``batch``, what
    make_input returned in its own shape (a tensor, a tuple, a dict), moved: what a family's loss is given."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    batch: object = None

    def tensors(self) -> list[torch.Tensor]:
        return [*self.args, *self.kwargs.values()]


INPUT_RULE = "make_input must return a tensor, a tuple of tensors or a dict of tensors"


def input_batch(make_input: Callable, batch_size: int, device: torch.device, dtype: torch.dtype,
                seed: int = 0) -> InputBatch:
    """One input batch: floating tensors cast to dtype, all on device, none requiring grad. A dict is passed as
    keywords; a tensor, tuple or list positionally."""
    torch.manual_seed(seed + 1)
    raw = make_input(batch_size)

    def moved(t):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{INPUT_RULE}; got {type(t).__name__}"
                             + (f" in {type(raw).__name__}" if t is not raw else ""))
        t = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
        return t.detach().requires_grad_(False)

    if isinstance(raw, dict):
        odd = next((k for k in raw if not isinstance(k, str)), None)
        if odd is not None:
            raise ValueError(f"{INPUT_RULE}; got a dict with key {short_repr(odd)} (keys are argument names)")
        kwargs = {k: moved(v) for k, v in raw.items()}
        return InputBatch((), kwargs, dict(kwargs))
    args = tuple(moved(t) for t in (raw if isinstance(raw, (tuple, list)) else (raw,)))
    return InputBatch(args, {}, args if isinstance(raw, (tuple, list)) else args[0])


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
