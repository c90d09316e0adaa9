"""Autocast inside the operators a dispatch mode runs, as eager has it.

While a dispatch mode handles an operator, the dispatcher excludes the keys above the Python key, autocast's
among them: what the operator's kernel calls inside runs without autocast (torch.is_autocast_enabled reads
False there). Eager keeps autocast on inside an operator autocast has no kernel for, and off inside one it
casts. The transformer fast path is of the first kind: its fused kernel calls linear layers that autocast casts
to bfloat16. Under a mode they ran in float32 on a bfloat16 input and raised, so that the behaviour probes'
operator trace and the flop counter failed a case (nn.TransformerEncoder, eval_no_grad under
``--autocast bfloat16``) that eager runs. EagerAutocast, pushed beneath such a mode, is the last mode an
operator passes: it runs the fast path's kernels with the case's autocast entered again, as eager has it.

Only those (FUSED_KERNELS): a mode cannot tell whether autocast was on where an operator was called. An
operator called from inside one autocast casts (cdist, which autocast runs in float32, calls _euclidean_dist,
which autocast has no kernel for) runs without autocast in eager, and with it re-entered here its products ran
in bfloat16 and its backward failed (a helper's attack). The tracker, which runs composites itself, follows
the nesting (TensorMemoryTracker._autocast_inside).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

AutocastFactory = Callable[[], contextlib.AbstractContextManager]
aten = torch.ops.aten
# the transformer fast path's fused kernels: autocast has no kernel for them, and they call operators it casts
FUSED_KERNELS = frozenset({aten._transformer_encoder_layer_fwd.default, aten._native_multi_head_attention.default})


@functools.lru_cache(maxsize=None)
def has_autocast_kernel(func, device_type: str) -> bool:
    """Whether autocast casts ``func`` on this device (then what runs inside it runs without autocast)."""
    key = {"cpu": "AutocastCPU", "cuda": "AutocastCUDA"}.get(device_type)
    return key is None or torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key)


class EagerAutocast(TorchDispatchMode):
    """The fast path's fused kernels run with the case's autocast entered again inside, as eager has them (see
    the module); every other operator as it comes."""

    def __init__(self, autocast: AutocastFactory):
        super().__init__()
        self.autocast = autocast

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in FUSED_KERNELS:
            return func(*args, **kwargs)
        with self.autocast():
            return func(*args, **kwargs)


@contextlib.contextmanager
def above_eager_autocast(mode: contextlib.AbstractContextManager, autocast: AutocastFactory | None):
    """``mode`` (a dispatch mode, or what pushes one: FlopCounterMode) with EagerAutocast beneath it; the mode
    alone where the case has no autocast."""
    with EagerAutocast(autocast) if autocast is not None else contextlib.nullcontext(), mode as entered:
        yield entered
