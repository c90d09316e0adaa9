"""What a built-in family's model weighs, without building its weights: the model is built on the meta
device (shapes only, no storage: instant even for llama 8b), once per process for each size and input.

`gradbench list` prints these figures; the fit check (fit.py) sets them against the device's memory.
A parameter shared by two modules (GPT-2's tied embedding and head) is counted once, as
model.parameters() yields it; a dtype casts the floating-point tensors only, as ``model.to(dtype)`` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import state
from .models import FAMILIES, Built, family_axis
from .workload import DTYPES


@dataclass(frozen=True)
class MetaModel:
    """A family's model for one size and input, built on the meta device, and its input maker."""

    built: Built

    @property
    def model(self) -> nn.Module:
        return self.built.model

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def buffers(self) -> list[torch.Tensor]:
        return list(self.model.buffers())


class Unavailable(RuntimeError):
    """The family cannot be built here: its extra is not installed (``needs``: the pip command), or its
    code failed to import. One line; never a traceback in `gradbench list`."""

    def __init__(self, message: str, needs: str | None = None):
        super().__init__(message)
        self.needs = needs


def extra_command(extra: str) -> str:
    return f"pip install 'gradbench[{extra}]'"


def _build(name: str, size: str, seq_len: int | None = None, image_size: int | None = None) -> Built:
    """The family's Built for one size and input, as build_model makes it but with ImportError left to the
    caller (who says which extra is missing)."""
    family = FAMILIES[name]
    return family.build(size, **family_axis(family, seq_len, image_size))


_META: dict[tuple, MetaModel | Unavailable | ValueError] = {}  # per process: a family's size is built on meta once


def meta_model(name: str, size: str, seq_len: int | None = None, image_size: int | None = None) -> MetaModel:
    """The model on the meta device, built once per process; Unavailable (raised, and again for later calls)
    where the family cannot be built here. Built under the clean state a Workload's build has, and restored
    after it (the RNG too), so that a case does not depend on whether it was weighed first."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; valid families: {', '.join(FAMILIES)}")
    key = (name, size, seq_len, image_size)
    if key not in _META:
        _META[key] = _meta_build(name, size, seq_len, image_size)
    found = _META[key]
    if isinstance(found, Exception):
        raise found
    return found


def _meta_build(name: str, size: str, seq_len: int | None,
                image_size: int | None) -> MetaModel | Unavailable | ValueError:
    family = FAMILIES[name]
    guard = state.CleanState(state.expected_state(0))
    try:
        with guard, torch.device("meta"):
            built = _build(name, size, seq_len=seq_len, image_size=image_size)
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        if family.extra and missing and missing != "gradbench":  # a package of the extra, not our own module
            return Unavailable(f"needs: {extra_command(family.extra)} (no module named {missing!r})",
                               needs=extra_command(family.extra))
        return Unavailable(f"cannot build {name!r}: {type(exc).__name__}: {exc}")
    except ValueError as exc:  # the family's own refusal of a size or input (seq_len above its positions, ...)
        return exc
    except Exception as exc:  # a builder that fails on the meta device: listed with why, never a traceback
        return Unavailable(f"cannot build {name!r} on the meta device: {type(exc).__name__}: {exc}")
    finally:  # a library imported here for the first time may set global state: named and undone, as in a build
        state.announce(state.describe(f"model {name!r}", "while it was built on the meta device", guard.changes))
    if not isinstance(built, Built):  # a family returns a Built; a bare (model, make_input) is accepted too
        built = Built(*built)
    return MetaModel(built)


def check_buildable(name: str, size: str, seq_len: int | None = None, image_size: int | None = None) -> None:
    """ValueError, in one line, where a built-in family cannot be built here at these inputs (a sequence length
    above its positions, an image size it refuses, its extra not installed): found on the meta device when the
    grid is checked, before any worker starts, not as an error record per case."""
    try:
        meta_model(name, size, seq_len, image_size)
    except Unavailable as exc:
        raise ValueError(f"model {name!r} {exc}" if exc.needs else str(exc)) from None


def element_bytes(tensor: torch.Tensor, dtype: str) -> int:
    """Bytes per element once the model is cast to ``dtype``: floating-point tensors take it, others keep theirs."""
    kind = DTYPES[dtype] if tensor.is_floating_point() else tensor.dtype
    return torch.empty((), dtype=kind, device="meta").element_size()


def tensor_bytes(tensors, dtype: str) -> int:
    return sum(t.numel() * element_bytes(t, dtype) for t in tensors)


def weights(model: str, size: str, dtype: str = "float32", seq_len: int | None = None,
            image_size: int | None = None) -> tuple[int, int]:
    """(parameters, their bytes in ``dtype``) of a built-in family's size: the counts a real build's
    ``parameter_count`` and ``param_bytes`` give, from a meta build. Raises Unavailable or ValueError."""
    params = meta_model(model, size, seq_len, image_size).parameters()
    return sum(p.numel() for p in params), tensor_bytes(params, dtype)
