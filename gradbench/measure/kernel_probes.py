"""What a CPU kernel does that its fake kernel does not show, found by running it for real on zeros (a probe).

Some CPU kernels allocate buffers of their own below the dispatcher, which no tensor shows: BatchNorm's
scale and shift per channel (in backward one of the input's size), oneDNN's reordered weights and inputs for
a convolution (resnet 18 at 64 px, batch 2: nine tenths of the measured peak). And some fake kernels return
other tensors than the real one: LSTM's oneDNN layer (mkldnn_rnn_layer) returns an empty workspace on fake
tensors where the real one returns the workspace it saves for backward; BatchNorm under bfloat16 autocast
keeps its statistics in float32 on CPU, in bfloat16 on fake tensors. A prediction for a CPU runs each such
operator for real on zeros of its arguments' shapes, dtypes and layouts, measures the allocator's peak
above its outputs (torch.profiler's memory events, as the measurement does), and takes the real outputs'
dtypes and sizes. Probes are cached per signature.

Where the arguments at the case's size fit in PROBE_LIMIT, the probe runs at that size: exact. Beyond, an
operator whose batch is its arguments' first dimension is probed at PROBE_BATCH and twice it, and its
buffers are extrapolated along the line through the two (BatchNorm's are affine in the batch: measured);
one that cannot be (an LSTM's layer, whose batch may be its second dimension) is not followed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import _disable_current_modes
from .tensors import NotFollowed, _storage_key, _tensor_args, storage_nbytes

aten = torch.ops.aten


AUTO = "auto"  # Probed.batched: every tensor argument whose first dimension is the first argument's


@dataclass(frozen=True)
class Probed:
    """An operator probed on fake CPU tensors: the indices of its arguments whose first dimension is the batch
    (for a probe at a smaller batch; None where the batch cannot be told from the arguments), and whether
    only in reduced precision (a matrix product in float32 runs BLAS, which allocates nothing torch counts)."""
    batched: tuple | None
    reduced_only: bool = False


PROBED = {
    aten.native_batch_norm.default: Probed((0,)),
    aten.native_batch_norm_backward.default: Probed((0, 1)),
    aten.convolution.default: Probed((0,)),
    aten.convolution_backward.default: Probed((0, 1)),
    aten.mkldnn_rnn_layer.default: Probed(None),
    aten.mkldnn_rnn_layer_backward.default: Probed(None),
    # oneDNN's matrix products in bfloat16 and float16 reorder their operands into buffers of their own (a
    # Linear(64, 128) under bfloat16 autocast, batch 4: 13,952 bytes, the forward's peak at 0.57 without); in
    # float32 an expanded operand (the gradient of a sum) is copied for BLAS (probed())
    aten.addmm.default: Probed((1,), reduced_only=True),
    aten.mm.default: Probed((0,), reduced_only=True),
    aten.bmm.default: Probed((0, 1), reduced_only=True),
    aten.baddbmm.default: Probed((0, 1, 2), reduced_only=True),
    # logsumexp's kernel keeps a temporary of its input's size (a tied-embedding model's forward at 0.60 without)
    aten.logsumexp.default: Probed((0,)),
    # the transformer fast path (nn.TransformerEncoderLayer, nn.MultiheadAttention in eval without grad): fused
    # kernels with no fake kernel at all, whose outputs are made from the probe's
    aten._transformer_encoder_layer_fwd.default: Probed(None),
    aten._native_multi_head_attention.default: Probed(None),
    # SDPA's flash kernel for CPU keeps buffers per thread
    aten._scaled_dot_product_flash_attention_for_cpu.default: Probed((0, 1, 2)),
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default: Probed((0, 1, 2, 3, 4, 5)),
    # found by a helper's attack, each low without its probe (predicted / measured, peak): pooling, upsampling,
    # unfolding and padding, whose kernels copy an input laid out otherwise than they work (channels-last, a
    # transpose) or keep buffers (nearest and bilinear upsampling, contiguous: 0.50; average pooling of a
    # transposed input 0.56; unfold 0.62-0.76); GroupNorm of channels-last 0.94; losses computed in forward,
    # whose kernels keep the unreduced loss (smooth L1 and BCE with logits 0.50, bfloat16 0.35; BCE 0.75); cdist
    # 0.62; nn.Bilinear's _trilinear 0.79 (0.45 under autocast); FFTs 0.71-0.77
    **{getattr(aten, name).default: Probed(AUTO) for name in (
        "avg_pool2d", "avg_pool2d_backward", "max_pool2d_with_indices", "max_pool2d_with_indices_backward",
        "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
        "upsample_nearest2d", "upsample_nearest2d_backward", "upsample_bilinear2d", "upsample_bilinear2d_backward",
        "im2col", "col2im", "reflection_pad2d", "reflection_pad2d_backward", "replication_pad2d",
        "replication_pad2d_backward", "native_group_norm", "native_group_norm_backward",
        "smooth_l1_loss", "smooth_l1_loss_backward", "huber_loss", "huber_loss_backward",
        "binary_cross_entropy", "binary_cross_entropy_backward", "binary_cross_entropy_with_logits",
        "_euclidean_dist", "_cdist_forward", "_cdist_backward", "_trilinear", "_fft_r2c", "_fft_c2r", "_fft_c2c",
        # and their kin in one and three dimensions (stft pads its signal by reflection), not attacked one by one
        "reflection_pad1d", "reflection_pad1d_backward", "reflection_pad3d", "reflection_pad3d_backward",
        "replication_pad1d", "replication_pad1d_backward", "replication_pad3d", "replication_pad3d_backward",
        "upsample_nearest1d", "upsample_nearest1d_backward", "upsample_linear1d", "upsample_linear1d_backward",
        "upsample_nearest3d", "upsample_nearest3d_backward", "upsample_trilinear3d", "upsample_trilinear3d_backward",
        "upsample_bicubic2d", "upsample_bicubic2d_backward", "_upsample_nearest_exact2d",
        "_upsample_nearest_exact2d_backward", "avg_pool3d", "avg_pool3d_backward", "max_pool3d_with_indices",
        "max_pool3d_with_indices_backward", "_adaptive_avg_pool3d", "_adaptive_avg_pool3d_backward",
        "adaptive_max_pool3d", "adaptive_max_pool3d_backward")},
    # nn.EmbeddingBag's kernel keeps index buffers of its own (0.80 without); its batch is folded into the indices
    aten._embedding_bag.default: Probed(None),
    aten._embedding_bag_forward_only.default: Probed(None),
    aten._embedding_bag_backward.default: Probed(None),
    aten._embedding_bag_dense_backward.default: Probed(None),
}
_REDUCED = (torch.bfloat16, torch.float16)

# CPU kernels that copy each of these arguments that is not contiguous into a contiguous buffer of their own,
# freed when they return (measured on permuted inputs: the copy is the argument's bytes; transformers' Whisper
# encoder normalises the permuted output of its convolutions: its forwards were 0.97 without).
CONTIGUOUS_COPIES = {
    aten.native_layer_norm.default: (0,),
    aten.native_layer_norm_backward.default: (0, 1),
    aten._softmax.default: (0,),
    aten._log_softmax.default: (0,),
    aten._softmax_backward_data.default: (0, 1),
    aten._log_softmax_backward_data.default: (0, 1),
    aten.index_select.default: (0,),
}


def contiguous_copies(func, args) -> int:
    """Bytes a CPU kernel copies its arguments into because they are not contiguous (CONTIGUOUS_COPIES)."""
    copied = CONTIGUOUS_COPIES.get(func, ())
    return sum(a.numel() * a.element_size() for i, a in enumerate(args) if i in copied
               and isinstance(a, torch.Tensor) and not a.is_contiguous())


# A pointwise operator's CPU kernel (TensorIterator's) first copies each operand of another dtype than the
# operands' common one into a buffer of the common dtype, freed when it returns (measured: bfloat16 logits plus a
# float32 bias, a float32 tensor times a boolean mask, an integer tensor times 0.5; transformers' BART under
# bfloat16 autocast, whose logits add a float32 bias: 0.65-0.86 without). A 0-dim tensor is read as a scalar and
# not copied. A condition or a mask takes no part in the promotion (measured: no copy).
_NOT_PROMOTED = {aten.where.self: (0,), aten.masked_fill.Scalar: (1,), aten.masked_fill.Tensor: (1,),
                 aten.masked_fill_.Scalar: (1,), aten.masked_fill_.Tensor: (1,)}


def promotion_copies(func, args) -> int:
    """Bytes a pointwise CPU kernel copies its operands into to bring them to their common dtype."""
    if torch.Tag.pointwise not in func.tags:
        return 0
    skipped = _NOT_PROMOTED.get(func, ())
    operands = [a for i, a in enumerate(args) if i not in skipped and isinstance(a, (torch.Tensor, bool, int, float))]
    tensors = [a for a in operands if isinstance(a, torch.Tensor)]
    if not any(t.dim() for t in tensors) or (len(tensors) == len(operands) and len({t.dtype for t in tensors}) < 2):
        return 0
    from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

    try:
        _, common = elementwise_dtypes(*operands, type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT)
    except Exception:  # noqa: BLE001 - operands torch's own promotion does not take: nothing known to count
        return 0
    return sum(t.numel() * common.itemsize for t in tensors if t.dim() and t.dtype != common)


_SUMS = {aten.sum.default, aten.sum.dim_IntList}
_MEANS = {aten.mean.default, aten.mean.dim}


def reduction_copies(func, args, kwargs, out) -> int:
    """Bytes a CPU sum or mean copies its input into: one in the result's dtype where it is another (the
    ``dtype`` asked for; int64 for a boolean's sum: amax's backward in bfloat16, 0.64 without); a mean in
    bfloat16 or float16 sums a float32 copy of its input into a float32 result, then casts (measured:
    transformers' attention weights averaged over heads in bfloat16, 0.90 without)."""
    if func not in _SUMS and func not in _MEANS or not isinstance(out, torch.Tensor):
        return 0
    x = args[0]
    if func in _MEANS and out.dtype in _REDUCED:
        return (x.numel() + out.numel()) * torch.float32.itemsize
    return x.numel() * out.dtype.itemsize if out.dtype != x.dtype else 0  # a boolean's sum: an int64 copy


def complex_to_real_copies(func, args, out) -> int:
    """Bytes a pointwise CPU kernel from complex operands to a real result (abs, angle) computes into first: a
    buffer of the complex operand's size (measured; an FFT's magnitude: 0.71 without)."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or torch.Tag.pointwise not in func.tags:
        return 0
    return sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor) and a.is_complex()
               and a.dim())


def kernel_copies(func, args, kwargs, out) -> int:
    """What a CPU kernel copies its arguments into, beyond what its fake kernel shows."""
    return contiguous_copies(func, args) + promotion_copies(func, args) + \
        reduction_copies(func, args, kwargs, out) + complex_to_real_copies(func, args, out)


def probed(func, args) -> bool:
    """Whether ``func`` on these arguments is probed: a matrix product in float32 only where an operand is
    neither contiguous nor a transpose of one (an expanded gradient, whose copy BLAS needs is the kernel's own)."""
    kind = PROBED.get(func)
    if kind is None:
        return False
    tensors = _tensor_args(args)
    return not kind.reduced_only or any(t.dtype in _REDUCED or _odd(t) for t in tensors)


PROBE_BATCH = 8  # beyond the limit, probed at this batch and twice it
PROBE_LIMIT = 256 * 2 ** 20  # the most a probe's real arguments may take, a third of its peak


class ProbeRefused(NotFollowed):
    """The operator cannot be probed here (its layout, or the probe's size): one line."""


@dataclass(frozen=True)
class Probe:
    temporaries: int  # bytes allocated beyond the outputs, at the kernel's peak
    # per output: (shape, stride, dtype, storage bytes, storage offset) of the real kernel's, None where not a
    # tensor; the storage's where the output is a view into a larger buffer of the kernel's own (smooth L1's mean
    # is a 0-dim view into the unreduced loss, which it keeps: 0.75 without), else None
    outputs: tuple
    # bytes the kernel leaves allocated beyond its outputs: autocast's cast cache, which keeps the reduced copy
    # of each leaf that requires grad (the weights) cast inside a kernel autocast runs on (the fast path) until
    # the autocast scope ends (the fast path under bfloat16 autocast, eval_no_grad: 0.72 without)
    retained: int = 0


_cache: dict[tuple, Probe] = {}


def _layout(t) -> torch.memory_format | None:
    """The memory format a tensor is laid out in, None for a layout none describes (a transpose)."""
    if t.is_contiguous():
        return torch.contiguous_format
    return next((f for f, dims in ((torch.channels_last, 4), (torch.channels_last_3d, 5))
                 if t.dim() == dims and t.is_contiguous(memory_format=f)), None)


def _odd(t: torch.Tensor) -> bool:
    """A matrix neither contiguous nor a transpose of one (an expanded gradient): a product copies it for BLAS."""
    return t.dim() >= 2 and not (t.is_contiguous() or t.mT.is_contiguous())


def _nbytes(args, kwargs=None) -> int:
    return sum(t.numel() * t.element_size() for t in _tensor_args([*args, *(kwargs or {}).values()]))


def probe(func, args: tuple, kwargs: dict) -> Probe:
    """The real kernel's buffers and outputs at this call's shapes: probed at them where they fit, else
    extrapolated from two smaller batches. ProbeRefused where neither can be done."""
    name = func.overloadpacket.__name__
    if any(t.is_nested for t in _tensor_args([*args, *kwargs.values()])):
        raise ProbeRefused(f"{name} on a nested tensor (the fast path with a padding mask): a probe cannot make "
                           "zeros of its shapes")
    if 3 * _nbytes(args, kwargs) <= PROBE_LIMIT:
        return _probed(func, args, kwargs)
    batched = PROBED[func].batched
    if batched == AUTO:
        first = args[0] if isinstance(args[0], torch.Tensor) and args[0].dim() else None
        batched = tuple(i for i, a in enumerate(args) if first is not None and isinstance(a, torch.Tensor)
                        and a.dim() and a.shape[0] == first.shape[0])
    n = int(args[batched[0]].shape[0]) if batched else 0
    if batched and any(_layout(args[i]) is None for i in batched):
        raise ProbeRefused(f"{name} of an input laid out neither contiguous nor channels-last (a transpose), too "
                           f"large to probe at its own size ({3 * _nbytes(args) / 2 ** 20:.0f} MiB, more than "
                           f"{PROBE_LIMIT // 2 ** 20} MiB), cannot be probed at a smaller batch")
    small = [_at_batch(args, batched, b) for b in (PROBE_BATCH, 2 * PROBE_BATCH)] if n > 2 * PROBE_BATCH else []
    too_large = not small or 3 * _nbytes(small[1]) > PROBE_LIMIT
    if too_large and PROBED[func].reduced_only and not any(t.dtype in _REDUCED for t in _tensor_args(args)):
        # a float32 product too large to probe: its own allocation is the contiguous copy of each operand that is
        # neither contiguous nor a transpose, as the small ones probed show
        return Probe(sum(t.numel() * t.element_size() for t in _tensor_args(args) if _odd(t)), ())
    if too_large:
        raise ProbeRefused(f"{name} on CPU allocates buffers of its own, and measuring them would take a probe of "
                           f"{3 * _nbytes(small[1] if small else args) / 2 ** 20:.0f} MiB (more than "
                           f"{PROBE_LIMIT // 2 ** 20} MiB)" + ("" if batched else " at its own size")
                           + " (large samples, or a batch folded into another dimension)")
    low, high = (_probed(func, a, kwargs) for a in small)
    per_sample = (high.temporaries - low.temporaries) / PROBE_BATCH
    return Probe(max(0, round(low.temporaries + per_sample * (n - PROBE_BATCH))),
                 tuple(None if o is None else (None, None, o[2], None, None) for o in low.outputs))  # dtypes only


def _at_batch(args, batched, batch: int) -> tuple:
    """The arguments with the batched ones' first dimension set to ``batch`` (shapes only: fake tensors)."""
    return tuple(a.new_empty((batch, *a.shape[1:])).to(memory_format=_layout(a)) if i in batched else a
                 for i, a in enumerate(args))


def real_zeros(a, leaves: bool = False):
    """A real CPU tensor of ``a``'s shape, strides and dtype, zeros (a transpose stays one: a kernel may return
    another layout for it); other arguments as they are. ``leaves``: a leaf that requires grad stays one (what
    autocast's cast cache keeps is decided on that)."""
    if isinstance(a, torch.Tensor) and leaves and a.is_leaf and a.requires_grad:
        return torch.empty_strided(a.shape, a.stride(), dtype=a.dtype).zero_().requires_grad_()
    if isinstance(a, torch.Tensor):
        extent = 1 + sum((size - 1) * stride for size, stride in zip(a.shape, a.stride())) if a.numel() else 0
        return torch.zeros(extent, dtype=a.dtype).as_strided(a.shape, a.stride())
    if isinstance(a, (list, tuple)):
        return type(a)(real_zeros(x, leaves) for x in a)
    if isinstance(a, dict):  # keyword arguments (SDPA's attn_mask): a fake one left in would take the op to fake
        return {k: real_zeros(v, leaves) for k, v in a.items()}
    return a


def _signature(a):
    if isinstance(a, torch.Tensor):
        return ("T", tuple(a.shape), a.stride(), a.dtype, a.is_leaf and a.requires_grad)
    if isinstance(a, (list, tuple)):
        return tuple(_signature(x) for x in a)
    return a


def _probed(func, args, kwargs) -> Probe:
    # autocast on inside the operator (one it has no kernel for): what it casts inside may be cached (eager
    # caches no cast under inference mode: measured)
    cached = torch.is_autocast_enabled("cpu") and torch.is_autocast_cache_enabled() and \
        not torch.is_inference_mode_enabled()
    key = (func, torch.is_grad_enabled(), torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"),
           cached, _signature(args), _signature(tuple(sorted(kwargs.items()))))
    if key not in _cache:
        with _disable_current_modes():  # the tracker's and the fake mode: the probe's tensors are real
            try:
                _cache[key] = _run(func, real_zeros(args, cached), real_zeros(kwargs, cached), cached)
            except Exception as exc:  # noqa: BLE001 - a kernel that refuses zeros, or these shapes on this machine
                raise ProbeRefused(f"{func.overloadpacket.__name__} on CPU allocates buffers of its own, and its "
                                   f"kernel could not be probed on zeros: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}"[:400]) from None
    return _cache[key]


def _run(func, args, kwargs, cached: bool = False) -> Probe:
    """``cached``: autocast's cache is on: the warm-up step runs without it, so that the measured step makes
    (and the cache keeps, until the caller's autocast scope ends and clears it) the casts eager makes."""
    from .memory import CpuAllocatorPeak

    outputs, calls = [], []

    def step():  # under the caller's grad mode: the LSTM layer returns its workspace only where grad is on
        calls.append(None)
        before = torch.is_autocast_cache_enabled()
        torch.set_autocast_cache_enabled(before and not (cached and len(calls) == 1))
        try:
            outputs.append(func(*args, **kwargs))
        finally:
            torch.set_autocast_cache_enabled(before)

    peak = CpuAllocatorPeak().measure(step, outputs.clear)
    out = outputs[-1] if isinstance(outputs[-1], (tuple, list)) else (outputs[-1],)
    made = storage_nbytes(t for t in out if isinstance(t, torch.Tensor))
    inputs = {_storage_key(t) for t in _tensor_args([*args, *kwargs.values()])}

    def kept(t):  # the bytes of the buffer the output views, where it is the kernel's own and larger
        own = t.untyped_storage().nbytes()
        return own if _storage_key(t) not in inputs and own > t.numel() * t.element_size() else None

    return Probe(max(0, peak.peak_bytes - made),
                 tuple((tuple(t.shape), t.stride(), t.dtype, kept(t), t.storage_offset())
                       if isinstance(t, torch.Tensor) else None for t in out),
                 max(0, peak.end_bytes - made) if cached else 0)


def _fake_like(like: torch.Tensor, real: tuple) -> torch.Tensor:
    """A fake tensor as the real output ``real`` (Probe.outputs), a view into a buffer of its size where it is
    one."""
    shape, stride, dtype, kept, offset = real
    if kept is None:
        return like.new_empty_strided(shape, stride, dtype=dtype)
    return like.new_empty(kept // dtype.itemsize, dtype=dtype).as_strided(shape, stride, offset)


def fake_outputs(probed: Probe, like: torch.Tensor) -> tuple | torch.Tensor:
    """The real kernel's outputs as fake tensors (on ``like``'s mode and device), for an operator with no fake
    kernel."""
    made = tuple(None if o is None else _fake_like(like, o) for o in probed.outputs)
    return made if len(made) > 1 else made[0]


def as_real(out, probed: Probe):
    """The fake kernel's outputs, each replaced by a fake tensor of the real kernel's size and dtype where the two
    differ (the LSTM layer's workspace, BatchNorm's float32 statistics under autocast)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    fixed = []
    for t, real in zip(outs, probed.outputs):
        if isinstance(t, torch.Tensor) and real is not None:
            shape, stride, dtype, kept, _ = real
            if kept is not None and kept > t.untyped_storage().nbytes():
                t = _fake_like(t, real)
            elif dtype != t.dtype or (shape is not None and (tuple(t.shape), t.stride()) != (shape, stride)):
                t = t.new_empty_strided(shape if shape is not None else t.shape,
                                        stride if stride is not None else t.stride(), dtype=dtype)
        fixed.append(t)
    fixed += list(outs[len(fixed):])
    return type(out)(fixed) if isinstance(out, (tuple, list)) else fixed[0]


class CpuKernels:
    """What a tracker on fake CPU tensors asks of the probes (TensorMemoryTracker(cpu_kernels=CpuKernels()))."""

    applies = staticmethod(probed)
    probe = staticmethod(probe)
    copies = staticmethod(kernel_copies)
    as_real = staticmethod(as_real)
    fake_outputs = staticmethod(fake_outputs)
