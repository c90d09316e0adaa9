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

import contextlib
import functools
import weakref
from typing import Callable, Iterable

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .behaviour import output_tensors
from .eager_autocast import _BACKEND, _COMPOSITE, FUSED_KERNELS, _composite_only, autocast_on_inside

aten = torch.ops.aten
# Operators whose fake kernel returns less than the real one allocates where the real kernel is not the CPU's (a
# CUDA case run on the CPU's kernels, where torch has no CUDA): a prediction would be silently low. On a CPU
# case they are probed (kernel_probes).
_FAKE_UNDERSTATES = {
    aten.mkldnn_rnn_layer.default: "mkldnn_rnn_layer (nn.LSTM on the CPU's kernels) returns an empty workspace on "
                                   "fake tensors, where cuDNN's is saved for backward on CUDA (about 12x the rest of "
                                   "a small LSTM's saved bytes), and it cannot be probed on CUDA here",
}
_expired = torch.UntypedStorage._expired  # StorageWeakRef.expired() without its two Python layers


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


class NotFollowed(RuntimeError):
    """The tracker cannot follow an operator's allocations on fake tensors (a prediction): one line."""


class TensorMemoryTracker(TorchDispatchMode):
    """Exact peak of tensor storage created while active, above what existed before. ``block_bytes(nbytes)``:
    what the allocator takes for a storage of nbytes (default: nbytes; predict.py's CUDA rounding)."""

    def __init__(self, block_bytes: Callable[[int], int] | None = None, cpu_kernels=None,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None, with_values=None):
        super().__init__()
        # a prediction: small integer and boolean tensors the step makes are computed for real on the CPU
        # (small_values.with_values), so that branches on their values follow eager
        self.with_values = with_values
        self._stale: set = set()  # storages of real tensors an operator wrote fake values into
        # storages of biases that ATen's linear, called from C++ (nn.LSTM's projections), adds in place in eager
        # and out of place onto a fake tensor (predict._lstm_biases_added_in_place)
        self.biases_added_in_place: set = set()
        self._composite_depth = 0  # how deep inside composite kernels run from here (_reenter_composite)
        self._cast_cache: dict = {}  # what autocast's cache holds of probed kernels' casts (_cast_cache_held)
        # the step's autocast scope (compiled.autocast_scope), entered again for what runs inside an operator run
        # from here (a composite, a fused kernel, a probe), where eager has it on (_autocast_inside): the
        # dispatcher excludes the keys above a dispatch mode while it runs (autocast's too; torch.is_autocast_enabled
        # reads False there), so nn.LSTM's oneDNN layer, which autocast casts to bfloat16 on CPU, ran in float32
        # (an LSTM's inference-mode forward predicted at 1.55)
        self.autocast = autocast
        self._autocast_live = True  # whether autocast is on where the operator now dispatched was called
        self.block_bytes = block_bytes or (lambda nbytes: nbytes)
        # a prediction for a CPU: what its kernels do below the dispatcher, probed (kernel_probes.CpuKernels)
        self.cpu_kernels = cpu_kernels
        # storages created while active, by their weak reference's key: (the reference, bytes). Pruned of the
        # dead lazily, so ``current`` is an upper bound of the live bytes (exact after _prune): only an
        # allocation that could raise the peak needs it exact (a Llama-8B train step on fake tensors spent a
        # quarter of its time checking every live storage at every allocation)
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0
        self._pruned_at = 0  # how many were live after the last prune: the dict is compacted as it doubles
        self.ops: list[str] = []  # operator names seen, in order (shows the fused kernels were re-entered)

    def _prune(self) -> None:
        dead = [k for k in self.live if _expired(k)]
        for k in dead:
            self.current -= self.live.pop(k)[1]
        self._pruned_at = len(self.live)

    @contextlib.contextmanager
    def _autocast_inside(self, func, first):
        """The step's autocast around what runs inside ``func`` here, as eager has it: autocast casts an operator
        it has a kernel for and runs all that is inside it without autocast (SDPA, and the math kernel SDPA calls,
        which then computes in float32), and lets one it has no kernel for through with autocast still on
        inside (nn.LSTM's composite, the fast path), as far as the operator it is called from had it on."""
        outer = self._autocast_live
        # outside inference mode an operator here may come from inside a composite autocast cast above this
        # mode (cdist, in float32, calls _euclidean_dist), where eager has autocast off: only the fast path's
        # kernels, called from Python, are known to run with it on (cdist under autocast was probed in bfloat16:
        # saved 0.69, its backward unpredictable)
        self._autocast_live = on = outer and self.autocast is not None and autocast_on_inside(func, first)
        try:
            with self.autocast() if on else contextlib.nullcontext():
                yield
        finally:
            self._autocast_live = outer

    def adopt(self, t: torch.Tensor) -> torch.Tensor:
        """``t``, made outside the dispatcher (the CPU generator's state, which checkpointing keeps per block),
        counted as a storage the step created."""
        self._track_outputs(aten.clone.default, t)
        return t

    def _raise_peak(self, extra: int = 0) -> None:
        """The peak, if the live bytes plus ``extra`` (buffers of the moment) exceed it."""
        if self.current + extra > self.peak:
            self._prune()
            self.peak = max(self.peak, self.current + extra)

    def _track_outputs(self, func, out, inputs: list | None = None) -> None:
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) else (out,)
        new: dict[int, tuple[StorageWeakRef, int]] = {}  # by storage: outputs may share one (q, k, v)
        listed = len(returns) == 1 and isinstance(out, (tuple, list))  # one list return: split's views, unbind's
        for i, t in enumerate(outs):
            if not isinstance(t, torch.Tensor):
                continue
            if (listed or i < len(returns)) and returns[0 if listed else i].alias_info is not None:
                continue  # a view or in-place result: no new storage
            s = _storage(t)
            if s is None or s.nbytes() == 0:
                continue
            ref = StorageWeakRef(s)
            old = self.live.get(ref.cdata)
            if old is not None and not _expired(ref.cdata):
                continue
            new[ref.cdata] = (ref, self.block_bytes(s.nbytes()))
        if new and inputs:  # a view its schema does not say is one (unsafe_chunk, which nn.LSTM's cells use)
            for key in {_storage_key(t) for t in inputs}:
                new.pop(key, None)
        if not new:
            return
        if len(self.live) > 2 * self._pruned_at + 1024:
            self._prune()
        for key, (ref, nbytes) in new.items():
            old = self.live.pop(key, None)  # a dead storage's key, not pruned yet (a weak reference held keeps
            if old is not None:  # its address from reuse, so this is the same storage seen again)
                self.current -= old[1]
            self.live[key] = (ref, nbytes)
            self.current += nbytes
        self._raise_peak()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append(func.overloadpacket.__name__)
        tensors = _tensor_args(args)
        first = tensors[0] if tensors else None
        fake = any(isinstance(t, FakeTensor) for t in tensors)
        out = NotImplemented
        if self.with_values is not None:
            if not fake and any(_storage_key(t) in self._stale for t in tensors):
                raise NotFollowed(f"{func.overloadpacket.__name__} reads a tensor computed for real that an earlier "
                                  "operator wrote values into from fake tensors, values a prediction does not have")
            out = self.with_values(func, args, kwargs, tensors, fake)
            if out is not NotImplemented:
                self._track_outputs(func, out, tensors)
                return out
            if fake:  # a real tensor written from fake values keeps its old ones: nothing may read them
                self._stale.update(_storage_key(t) for t in _written(func, args, kwargs)
                                   if not isinstance(t, FakeTensor))
        if fake and self.biases_added_in_place and _adds_bias_in_place(func, args, kwargs, self.biases_added_in_place):
            return aten.add_.Tensor(*args)  # the sum's output is the product's: no storage made
        real = None
        if fake and self.cpu_kernels and first.device.type == "cpu" and self.cpu_kernels.applies(func, args):
            with self._autocast_inside(func, first):  # the real kernel's buffers and outputs (NotFollowed)
                real = self.cpu_kernels.probe(func, args, kwargs)
        elif func in FUSED_KERNELS and fake:
            raise NotFollowed(f"{func.overloadpacket.__name__} (the transformer fast path) allocates inside its "
                              "kernel, which cannot run on fake tensors, nor be probed on CUDA here")
        elif func in _FAKE_UNDERSTATES and fake:
            raise NotFollowed(_FAKE_UNDERSTATES[func])
        if func in FUSED_KERNELS and real is not None:  # no fake kernel: the real kernel's outputs, as fake tensors
            out = self.cpu_kernels.fake_outputs(real, first)
        elif func in FUSED_KERNELS:
            key = torch._C.DispatchKey.CUDA if first.device.type == "cuda" else torch._C.DispatchKey.CPU
            with self, self._autocast_inside(func, first):  # see the kernel's inner allocations too
                out = func.redispatch(torch._C.DispatchKeySet(key), *args, **kwargs)
        elif _reenter_composite(func, first, fake):
            # Under inference mode autograd does not decompose a composite operator before it reaches this
            # mode (dropout arrives whole, its noise unseen): run here through its C++ kernel, the one eager
            # runs (not torch._decomp's Python decomposition, which may differ), its inner operators are seen.
            self._composite_depth += 1
            try:
                with self, self._autocast_inside(func, first):
                    out = func._op_dk(_COMPOSITE, *args, **kwargs)
            finally:
                self._composite_depth -= 1
        if out is NotImplemented:
            out = func(*args, **kwargs)
            if self._composite_depth and torch.is_inference_mode_enabled():
                _as_differentiable_view(func, first, out)
        if real is not None:
            out = self.cpu_kernels.as_real(out, real)
        self._track_outputs(func, out, tensors)
        if real is not None and real.retained:
            self._cast_cache_held(tensors, real.retained, first)
        if real is not None:  # the kernel's buffers, with its outputs made (those it leaves counted just now)
            self._raise_peak(real.temporaries - real.retained)
        elif fake and self.cpu_kernels and first.device.type == "cpu":  # its copies of non-contiguous inputs
            self._raise_peak(self.cpu_kernels.copies(func, args, kwargs, out))
        return out

    def _cast_cache_held(self, tensors, nbytes: int, like) -> None:
        """What autocast's cache keeps of a probed kernel's casts (kernel_probes.Probe.retained), held as long as
        the tracker (eager's until the step's autocast scope ends, which ends the step's forward), once for the
        same weights."""
        key = tuple(sorted(_storage_key(t) for t in tensors if t.is_leaf and t.requires_grad))
        if key not in self._cast_cache:
            self._cast_cache[key] = held = like.new_empty(nbytes, dtype=torch.uint8)
            self._track_outputs(aten.empty.memory_format, held)


def _written(func, args, kwargs) -> list:
    """The tensors an operator writes into (in place, or ``out=``)."""
    found = []
    for i, name in _written_arguments(func):
        value = args[i] if i < len(args) else kwargs.get(name)
        found += [t for t in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(t, torch.Tensor)]
    return found


@functools.lru_cache(maxsize=None)
def _written_arguments(func) -> tuple:
    return tuple((i, a.name) for i, a in enumerate(func._schema.arguments)
                 if a.alias_info is not None and a.alias_info.is_write)


def _tensor_args(args) -> list:
    """The tensors among an operator's arguments, in order: direct, or in a list or tuple (an operator's
    arguments nest no deeper; pytree's general flattening cost a tenth of a fake Llama step)."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


def _adds_bias_in_place(func, args, kwargs, biases: set) -> bool:
    """Whether this is ATen's linear adding one of ``biases`` to its product, which eager does in place (the
    bias is not a tensor subclass there) and may here: the sum has the product's shape and dtype, and autograd
    records neither (grad off, or neither requires grad)."""
    if func is not aten.add.Tensor or kwargs or len(args) != 2 or not all(isinstance(a, torch.Tensor) for a in args):
        return False
    product, bias = args
    return _storage_key(bias) in biases and bias.dim() == 1 and product.dtype == bias.dtype and \
        product.dim() >= 1 and product.shape[-1] == bias.shape[0] and \
        (not torch.is_grad_enabled() or not (product.requires_grad or bias.requires_grad))


def _as_differentiable_view(func, base, out) -> None:
    """A view made inside a composite kernel run from here under inference mode requires grad where its base
    does, as eager's has it: there the view of a normal tensor passes ADInplaceOrView, which the dispatcher
    excludes below a dispatch mode. Kernels decide on it: matmul folds a batch into one product where the
    weight's transpose requires grad, and otherwise expands the weight for a batched product, whose oneDNN
    kernel copies it (a bfloat16 MultiheadAttention in train mode under inference mode: 8.4 times the peak)."""
    returns = func._schema.returns
    if not (isinstance(out, torch.Tensor) and isinstance(base, torch.Tensor) and len(returns) == 1
            and returns[0].alias_info is not None and not returns[0].alias_info.is_write):
        return
    if base.requires_grad and not base.is_inference() and not out.requires_grad and \
            (out.is_floating_point() or out.is_complex()):
        out.requires_grad_()


def _reenter_composite(func, first, fake: bool) -> bool:
    """Whether eager would run ``func`` through its composite kernel: an aten operator with one and no kernel
    of its own for the device (silu_backward has both, and eager runs the CPU one). Never for fake CUDA
    tensors where torch has no CUDA: a C++ kernel's device guard aborts the process there."""
    if first is None or first.device.type not in _BACKEND:
        return False
    if not _composite_only(func, first.device.type):
        return False
    return not (fake and first.device.type == "cuda" and not torch.cuda.is_available())


class _Packed:
    """What a graph holds in place of a saved tensor while the counter runs: the tensor without its graph,
    as autograd itself stores a saved output (the tensor itself would close a reference cycle through
    its grad_fn that not even the garbage collector frees, keeping the graph alive)."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def _unpack(packed: _Packed) -> torch.Tensor:
    return packed.tensor


def _context_tensors(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Tensors that custom autograd Functions in the outputs' graph keep on their context rather than through
    save_for_backward (re-entrant checkpointing keeps the RNG state so): the saved-tensor hooks never see them."""
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen, found = set(), []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found += [t for t in tree_leaves(list(vars(node).values())) if isinstance(t, torch.Tensor)]
        stack.extend(fn for fn, _ in node.next_functions if fn is not None and fn not in seen)
    return found


class SavedTensorsCounter:
    """Bytes autograd holds for backward when a forward returns, excluding storages held anyway.

    Parameters, buffers and the input batch live whether or not a graph is kept, so saving a
    reference to them costs nothing; what is counted is the activations kept alive for backward.
    Taken at the forward's return, so a branch whose graph the forward discarded (a result dropped or
    detached) is not counted, nor is what backward saves (checkpointing's recomputation). Each packed
    tensor is followed by a weak reference to what the graph holds, not by address: the allocator
    reuses a freed storage's address for the next one.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self.exclude = {k for k in (_storage_key(t) for t in exclude) if k is not None}
        self.nbytes: int | None = None
        self._packed: list[weakref.ref] = []
        # dynamo must not trace the hook into a compiled graph (it recompiled it per tensor stride)
        self._pack_hook = torch.compiler.disable(self._pack)

    def _pack(self, t: torch.Tensor) -> _Packed:
        packed = _Packed(t.detach())
        if _storage_key(t) not in self.exclude:
            self._packed.append(weakref.ref(packed))
        return packed

    def run(self, forward: Callable[[], object]):
        """``forward()`` with the saved tensors followed; its output, and ``nbytes`` as held at its return."""
        self._packed = []
        with torch.autograd.graph.saved_tensors_hooks(self._pack_hook, _unpack):
            out = forward()
        held = [p.tensor for p in (ref() for ref in self._packed) if p is not None]
        held += _context_tensors(output_tensors(out))
        self.nbytes = storage_nbytes(t for t in held if _storage_key(t) not in self.exclude)
        self._packed = []
        return out


def parameter_bytes(model: torch.nn.Module) -> int:
    return storage_nbytes(model.parameters())


def gradient_bytes(model: torch.nn.Module) -> int:
    return storage_nbytes(p.grad for p in model.parameters() if p.grad is not None)
