"""Memory seen at the level of tensors: a dispatch-level peak tracker, and the bytes autograd saves.

TensorMemoryTracker follows every storage an operator creates while it is active, by weak
reference, and keeps the running peak of their bytes. An operator output that aliases an input (a
view, an in-place result) allocates nothing and is not counted. It is a cross-check, not the
record's peak: buffers a C++ kernel allocates for itself (oneDNN convolution and RNN workspaces)
never reach the dispatcher, so it sees less than the allocator does (memory.py has the
allocator-level peak). The transformer fast path's fused kernels are re-entered with the tracker
active, so their intermediate tensors count.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten
# Fused operators whose kernels allocate intermediates through the dispatcher; re-entered with the tracker on.
_FUSED = {
    aten._transformer_encoder_layer_fwd.default,
    aten._native_multi_head_attention.default,
}


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other storage-less tensors
        return None


def _storage_key(t: torch.Tensor):
    s = _storage(t)
    return None if s is None else StorageWeakRef(s).cdata


def storage_nbytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (shared storage counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = _storage(t)
        if s is not None:
            seen[StorageWeakRef(s).cdata] = s.nbytes()
    return sum(seen.values())


class TensorMemoryTracker(TorchDispatchMode):
    """Exact peak of tensor storage created while active, above what existed before."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0
        self.ops: list[str] = []  # operator names seen, in order (shows the fused kernels were re-entered)

    def _prune(self) -> None:
        dead = [k for k, (ref, _) in self.live.items() if ref.expired()]
        for k in dead:
            self.current -= self.live.pop(k)[1]

    def _track_outputs(self, func, out) -> None:
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) else (out,)
        new: dict[int, tuple[StorageWeakRef, int]] = {}  # by storage: outputs may share one (q, k, v)
        for i, t in enumerate(outs):
            if not isinstance(t, torch.Tensor):
                continue
            if i < len(returns) and returns[i].alias_info is not None:
                continue  # a view or in-place result: no new storage
            s = _storage(t)
            if s is None or s.nbytes() == 0:
                continue
            ref = StorageWeakRef(s)
            old = self.live.get(ref.cdata)
            if old is not None and not old[0].expired():
                continue
            new[ref.cdata] = (ref, s.nbytes())
        if not new:
            return
        self._prune()
        for key, (ref, nbytes) in new.items():
            self.live[key] = (ref, nbytes)
            self.current += nbytes
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append(func.overloadpacket.__name__)
        if func in _FUSED:
            device = next(t for t in tree_leaves(args) if isinstance(t, torch.Tensor)).device
            key = torch._C.DispatchKey.CUDA if device.type == "cuda" else torch._C.DispatchKey.CPU
            with self:  # see the kernel's inner allocations too
                out = func.redispatch(torch._C.DispatchKeySet(key), *args, **kwargs)
        else:
            out = func(*args, **kwargs)
        self._track_outputs(func, out)
        return out


def _unpacked(t: torch.Tensor) -> torch.Tensor:
    return t


class SavedTensorsCounter:
    """Bytes of the tensors autograd saves for backward, excluding storages held anyway.

    Parameters, buffers and the input batch live whether or not a graph is kept, so saving a
    reference to them costs nothing; what is counted is the activations kept alive for backward.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self.exclude = {k for k in (_storage_key(t) for t in exclude) if k is not None}
        self.saved: dict[int, int] = {}
        # dynamo must not trace the hook into a compiled graph (it recompiled it per tensor stride)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(torch.compiler.disable(self._pack), _unpacked)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        s = _storage(t)
        if s is not None:
            key = StorageWeakRef(s).cdata
            if key not in self.exclude:
                self.saved[key] = s.nbytes()
        return t

    @property
    def nbytes(self) -> int:
        return sum(self.saved.values())

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)


def parameter_bytes(model: torch.nn.Module) -> int:
    return storage_nbytes(model.parameters())


def gradient_bytes(model: torch.nn.Module) -> int:
    return storage_nbytes(p.grad for p in model.parameters() if p.grad is not None)
