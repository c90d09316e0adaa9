"""What a mode actually does to a model, observed during one forward pass rather than assumed.

Each probe watches the real forward: Dropout hooks compare a layer's output with its input,
BatchNorm hooks check whether the output matches normalisation by the running statistics, buffers
are compared before and after, and the operators dispatched reveal PyTorch's transformer fast path.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .memory import TensorMemoryTracker

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_FASTPATH_OPS = {"_transformer_encoder_layer_fwd", "_native_multi_head_attention"}
_TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.MultiheadAttention)


def output_tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in output_tensors(item)]
    return []


class _Probes:
    def __init__(self, model: nn.Module):
        self.dropouts = [m for m in model.modules() if isinstance(m, _DROPOUT)]
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.dropout_changed = False
        self.bn_batch_stats: list[bool] = []
        self._running: dict[int, tuple] = {}
        self._handles = []

    def _dropout_hook(self, module, inputs, output):
        if module.p > 0 and not torch.equal(inputs[0], output):
            self.dropout_changed = True

    def _bn_pre_hook(self, module, inputs):
        if module.running_mean is not None:
            self._running[id(module)] = (module.running_mean.clone(), module.running_var.clone())

    def _bn_hook(self, module, inputs, output):
        running = self._running.get(id(module))
        if running is None:  # no running statistics: batch statistics are the only option
            self.bn_batch_stats.append(True)
            return
        with torch.no_grad():
            by_running = F.batch_norm(
                inputs[0], running[0], running[1], module.weight, module.bias, False, 0.0, module.eps
            )
        # Tolerance scaled to dtype: batch statistics differ from running ones far beyond rounding.
        tol = 1e-3 if output.dtype == torch.float32 else 5e-2
        self.bn_batch_stats.append(not torch.allclose(output, by_running, atol=tol, rtol=tol))

    def __enter__(self):
        for m in self.dropouts:
            self._handles.append(m.register_forward_hook(self._dropout_hook))
        for m in self.norms:
            self._handles.append(m.register_forward_pre_hook(self._bn_pre_hook))
            self._handles.append(m.register_forward_hook(self._bn_hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()


def probe_behaviour(model: nn.Module, forward: Callable[[], object], reference: list[torch.Tensor] | None) -> dict:
    """Run one forward through ``forward()`` and report what the mode did.

    ``reference``: outputs of the same input under eval_no_grad, for max_abs_diff_vs_eval_no_grad.
    Buffers changed by this forward are left changed; the caller's mode undo restores them.
    """
    buffers_before = [b.detach().clone() for m in model.modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]
    tracker = TensorMemoryTracker()
    with _Probes(model) as probes, tracker:
        out = forward()
    outputs = output_tensors(out)
    norms = probes.norms
    buffers_after = [b for m in norms for b in m.buffers()]
    has_transformer = any(isinstance(m, _TRANSFORMER_LAYERS) for m in model.modules())
    graph_recorded = any(t.requires_grad and t.grad_fn is not None for t in outputs)
    grads = 0
    if graph_recorded:
        # Count the parameters a backward would reach, then leave no gradient behind.
        before = {id(p): p.grad for p in model.parameters()}
        for p in model.parameters():
            p.grad = None
        sum(t.float().sum() for t in outputs if t.requires_grad).backward()
        grads = sum(1 for p in model.parameters() if p.grad is not None)
        for p in model.parameters():
            p.grad = before[id(p)]
    diff = None
    if reference is not None and len(reference) == len(outputs):
        diff = max(
            (float((a.detach().float() - b.float()).abs().max()) for a, b in zip(outputs, reference) if a.numel()),
            default=0.0,
        )
    return {
        "dropout_active": probes.dropout_changed if probes.dropouts else None,
        "bn_batch_stats": any(probes.bn_batch_stats) if norms else None,
        "bn_stats_updated": (
            any(not torch.equal(a, b) for a, b in zip(buffers_before, buffers_after)) if norms else None
        ),
        "graph_recorded": graph_recorded,
        "grads_computed": grads,
        "fastpath": bool(_FASTPATH_OPS & set(tracker.ops)) if has_transformer else None,
        "max_abs_diff_vs_eval_no_grad": diff,
    }
