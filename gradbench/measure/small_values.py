"""Small integer and boolean tensors a predicted step makes for itself, computed for real on the CPU.

transformers treats a fake tensor as tracing and skips its value-dependent shortcuts (are the positions
consecutive, is the mask all ones): with fake positions and masks it builds the causal mask and repeats the
grouped keys and values, where eager passes is_causal and grouped-query attention to SDPA (Llama 1B's
forwards were predicted 5-9% high). With their values computed, code that branches on them takes eager's
branch. The tensor tracker and predict's workload builder ask ``with_values`` of each operator.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .kernel_probes import real_zeros

aten = torch.ops.aten

VALUE_LIMIT = 1 << 20  # elements: integer and boolean tensors up to this size a step makes are computed for real
_INTEGRAL = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_LIKE = {aten.ones_like.default, aten.zeros_like.default, aten.full_like.default}


def with_values(func, args: tuple, kwargs: dict, tensors: list, fake: bool):
    """The operator's result computed for real, on the CPU, where it is an integer or boolean tensor the step
    makes for itself (positions from arange, a mask of ones), or computed from such tensors only, and small.
    NotImplemented where not; the fake result where a factory makes something else."""
    if any(t.device.type != "cpu" for t in tensors) or str(kwargs.get("device") or "cpu") != "cpu":
        return NotImplemented
    if fake:
        like = args[0] if func in _LIKE else None
        if like is None or like.is_nested or (kwargs.get("dtype") or like.dtype) not in _INTEGRAL \
                or like.numel() > VALUE_LIMIT:
            return NotImplemented
        with _disable_current_modes():
            return func(real_zeros(like), *args[1:], **kwargs)
    if tensors:  # every tensor argument real: made so here, or the RNG's state
        if any(t.numel() > VALUE_LIMIT or t.is_nested for t in tensors):
            return NotImplemented
        with _disable_current_modes():
            return func(*args, **kwargs)
    out = func(*args, **kwargs)  # a factory: its dtype and size from the fake kernel first
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not outs or not all(isinstance(t, torch.Tensor) and t.dtype in _INTEGRAL and t.numel() <= VALUE_LIMIT
                           for t in outs):
        return out
    with _disable_current_modes():
        return func(*args, **kwargs)
