"""Autocast inside the operators a dispatch mode runs, as eager has it.

While a dispatch mode handles an operator, the dispatcher excludes the keys above the Python key, autocast's
among them: what the operator's kernel calls inside runs without autocast (torch.is_autocast_enabled reads
False there). Eager keeps autocast on inside an operator autocast has no kernel for, and off inside one it
casts. The transformer fast path is of the first kind: its fused kernel calls linear layers that autocast casts
to bfloat16. Under a mode they ran in float32 on a bfloat16 input and raised, so that the behaviour probes'
operator trace and the flop counter failed a case (nn.TransformerEncoder, eval_no_grad under
``--autocast bfloat16``) that eager runs. EagerAutocast, pushed beneath such a mode, is the last mode an
operator passes: it runs the operator with the case's autocast entered again where eager has it on.

That is known of the fast path's kernels (FUSED_KERNELS), which are called from Python, and of every operator
autocast has no kernel for under inference mode, where composites reach a mode whole, from the Python that
called them (an einsum of a bfloat16 activation with a float32 weight failed without). Elsewhere a mode cannot
tell whether autocast was on where an operator was called: an operator called from inside one that autocast
casts (cdist, which autocast runs in float32, calls _euclidean_dist, which it has no kernel for) runs without
autocast in eager; re-entered here, its products ran in bfloat16 and its backward failed (a helper's attack).
The tracker, which runs composites itself, follows the nesting (TensorMemoryTracker._autocast_inside).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

AutocastFactory = Callable[[], contextlib.AbstractContextManager]
aten = torch.ops.aten
# the transformer fast path's fused kernels: autocast has no kernel for them, and they call operators it casts
# (and that allocate through the dispatcher: the tracker re-enters them)
FUSED_KERNELS = frozenset({aten._transformer_encoder_layer_fwd.default, aten._native_multi_head_attention.default})


_COMPOSITE = torch._C.DispatchKey.CompositeImplicitAutograd
_BACKEND = {"cpu": torch._C.DispatchKey.CPU, "cuda": torch._C.DispatchKey.CUDA}


@functools.lru_cache(maxsize=None)
def _composite_only(func, device_type: str) -> bool:
    """An aten operator with a composite kernel and none of its own for the device (what the dispatcher has
    registered does not change during a run)."""
    if func.namespace != "aten" or device_type not in _BACKEND:
        return False
    name = func.name()
    return torch._C._dispatch_has_kernel_for_dispatch_key(name, _COMPOSITE) and \
        not torch._C._dispatch_has_kernel_for_dispatch_key(name, _BACKEND[device_type])


@functools.lru_cache(maxsize=None)
def has_autocast_kernel(func, device_type: str) -> bool:
    """Whether autocast casts ``func`` on this device (then what runs inside it runs without autocast)."""
    key = {"cpu": "AutocastCPU", "cuda": "AutocastCUDA"}.get(device_type)
    if key is None or func.namespace == "prim":  # prim::device and kin are not dispatcher operators
        return True
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key)


def _first_tensor(args) -> torch.Tensor | None:
    return next((a for a in tree_leaves(args) if isinstance(a, torch.Tensor)), None)  # einsum's are in a list


def autocast_on_inside(func, first: torch.Tensor | None) -> bool:
    """Whether eager runs what is inside ``func`` with autocast on, where it was on where ``func`` was called, as
    far as a dispatch mode can tell (see the module): the fast path's kernels, and under inference mode an
    operator autocast has no kernel for. ``first``: the operator's first tensor argument."""
    if func in FUSED_KERNELS:
        return True
    return first is not None and torch.is_inference_mode_enabled() and not has_autocast_kernel(func, first.device.type)


class EagerAutocast(TorchDispatchMode):
    """Operators run with the case's autocast entered again inside where eager has it on, as far as a mode can
    tell (see the module); every other operator as it comes."""

    def __init__(self, autocast: AutocastFactory):
        super().__init__()
        self.autocast = autocast

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return run_as_eager(self.autocast, func, args, kwargs or {})


def run_as_eager(autocast: AutocastFactory | None, func, args, kwargs):
    """``func`` run from a dispatch mode, with the case's autocast entered again inside where eager has it on, as
    far as a mode can tell (see the module)."""
    first = _first_tensor(args)
    if autocast is None or not autocast_on_inside(func, first):
        return func(*args, **kwargs)
    with autocast():  # a composite is run here, as eager runs it: below, a fake tensor mode would run it without
        return func._op_dk(_COMPOSITE, *args, **kwargs) if _composite_only(func, first.device.type) else \
            func(*args, **kwargs)


@contextlib.contextmanager
def above_eager_autocast(mode: contextlib.AbstractContextManager, autocast: AutocastFactory | None):
    """``mode`` (a dispatch mode, or what pushes one: FlopCounterMode) with EagerAutocast beneath it; the mode
    alone where the case has no autocast."""
    with EagerAutocast(autocast) if autocast is not None else contextlib.nullcontext(), mode as entered:
        yield entered
