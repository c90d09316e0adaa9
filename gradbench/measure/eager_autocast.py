"""Autocast inside the operators a dispatch mode runs, as eager has it.

While a dispatch mode handles an operator, the dispatcher excludes the keys above the Python key, autocast's
among them: what the operator's kernel calls inside runs without autocast (torch.is_autocast_enabled reads
False there). Eager keeps autocast on inside an operator autocast has no kernel for, and off inside one it
casts. The transformer fast path is of the first kind: its fused kernel calls linear layers that autocast casts
to bfloat16. Under a mode they ran in float32 on a bfloat16 input and raised, so that the behaviour probes'
operator trace and the flop counter failed a case (nn.TransformerEncoder, eval_no_grad under
``--autocast bfloat16``) that eager runs. EagerAutocast, pushed beneath such a mode, is the last mode an
operator passes: it runs the operator with the case's autocast entered again where eager has it on.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

AutocastFactory = Callable[[], contextlib.AbstractContextManager]


@functools.lru_cache(maxsize=None)
def has_autocast_kernel(func, device_type: str) -> bool:
    """Whether autocast casts ``func`` on this device (then what runs inside it runs without autocast)."""
    key = {"cpu": "AutocastCPU", "cuda": "AutocastCUDA"}.get(device_type)
    return key is None or torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key)


def first_tensor(args, kwargs) -> torch.Tensor | None:
    return next((a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)), None)


class EagerAutocast(TorchDispatchMode):
    """Each operator run with the case's autocast entered again where eager has it on inside (see the module).
    Where its operator was itself called from inside one autocast cast, eager had autocast off, which a mode
    cannot tell (the tracker, which runs composites itself, can: TensorMemoryTracker._autocast_inside); only a
    kernel that dispatches further operators of its own is affected."""

    def __init__(self, autocast: AutocastFactory):
        super().__init__()
        self.autocast = autocast

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = first_tensor(args, kwargs)
        if first is None or has_autocast_kernel(func, first.device.type):
            return func(*args, **kwargs)
        with self.autocast():
            return func(*args, **kwargs)


@contextlib.contextmanager
def above_eager_autocast(mode: contextlib.AbstractContextManager, autocast: AutocastFactory | None):
    """``mode`` (a dispatch mode, or what pushes one: FlopCounterMode) with EagerAutocast beneath it; the mode
    alone where the case has no autocast."""
    with EagerAutocast(autocast) if autocast is not None else contextlib.nullcontext(), mode as entered:
        yield entered
