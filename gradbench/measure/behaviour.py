"""What a mode actually does to a model, observed during real forward passes rather than assumed.

- Stochastic (``dropout_active``): the forward runs under one RNG seed, under another, and (when the
  two differ) under the first again, everything else identical (buffers are restored in between). It
  is stochastic when the outputs differ between the seeds and repeat under the same seed, whatever
  produces the randomness: nn.Dropout in place or not, F.dropout, dropout inside fused attention or
  RNN kernels, noise layers. ``stochastic_ops`` names the operators that consumed random numbers:
  the default generators' state changed across them, or a generator was passed to them. Outputs
  that do not repeat under one seed (nondeterministic kernels, a call counter) count as stochastic
  only if such an operator ran, and so do outputs that cannot show a difference (no tensor, or NaN
  everywhere); ``dropout_evidence`` says which decided. The first forward runs under the operator
  trace, which can change kernels and so rounding (inference_mode): where it alone differs, two
  untraced forwards decide.
- BatchNorm: hooks compare each output with normalisation by the running statistics; the running
  statistics are compared before and after the forward.
- Graph and gradients: whether the output has an autograd graph, and how many parameters a
  backward from it reaches. Fast path: which operators were dispatched.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .eager_autocast import FUSED_KERNELS, above_eager_autocast

_FASTPATH_OPS = {op.name() for op in FUSED_KERNELS}  # as OpTrace names them
_TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.MultiheadAttention)
_BATCHNORM = nn.modules.batchnorm._BatchNorm


def output_tensors(out) -> list[torch.Tensor]:
    """Every tensor in a model's output: a tensor, or dicts (Hugging Face ModelOutput), lists, tuples
    and dataclasses of them, nested."""
    if isinstance(out, torch.Tensor):
        return [out]
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        out = [getattr(out, f.name) for f in dataclasses.fields(out)]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in output_tensors(item)]
    return []


def default_generators(device: torch.device) -> list[torch.Generator]:
    """The generators a model draws from unless it brings its own: CPU's, and the case's GPU's."""
    generators = [torch.default_generator]
    if device.type == "cuda":
        generators.append(torch.cuda.default_generators[device.index or 0])
    return generators


class OpTrace(TorchDispatchMode):
    """Every operator dispatched, and those that consumed random numbers."""

    def __init__(self, generators: list[torch.Generator]):
        super().__init__()
        self.generators = generators
        self.ops: set[str] = set()
        self.rng_ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        before = [g.get_state() for g in self.generators]
        out = func(*args, **kwargs)
        name = func._schema.name
        self.ops.add(name)
        passed = any(isinstance(a, torch.Generator) for a in tree_leaves((args, kwargs)))
        if passed or any(not torch.equal(b, g.get_state()) for b, g in zip(before, self.generators)):
            if name not in self.rng_ops:
                self.rng_ops.append(name)
        return out


class _BatchNormProbes:
    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, _BATCHNORM)]
        self.batch_stats: list[bool] = []
        self._running: dict[int, tuple] = {}
        self._handles = []

    def _pre_hook(self, module, inputs):
        if module.running_mean is not None:
            self._running[id(module)] = (module.running_mean.clone(), module.running_var.clone())

    def _hook(self, module, inputs, output):
        running = self._running.get(id(module))
        if running is None:  # no running statistics: batch statistics are the only option
            self.batch_stats.append(True)
            return
        with torch.no_grad():
            by_running = F.batch_norm(
                inputs[0], running[0], running[1], module.weight, module.bias, False, 0.0, module.eps
            )
        # Tolerance scaled to dtype: batch statistics differ from running ones far beyond rounding.
        tol = 1e-3 if output.dtype == torch.float32 else 5e-2
        self.batch_stats.append(not torch.allclose(output, by_running, atol=tol, rtol=tol))

    def __enter__(self):
        for m in self.norms:
            self._handles.append(m.register_forward_pre_hook(self._pre_hook))
            self._handles.append(m.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()


def seed_everything(seed: int) -> None:
    """torch (every device), Python's random and NumPy's global RNG, if NumPy is loaded."""
    torch.manual_seed(seed)
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % 2**32)


def _detached(out) -> list[torch.Tensor]:
    return [t.detach().clone() for t in output_tensors(out)]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.allclose(x, y, rtol=0, atol=0, equal_nan=True)
        for x, y in zip(a, b)
    )


def _comparable(outputs: list[torch.Tensor]) -> bool:
    """Whether outputs can show a difference at all: some element that is neither NaN nor zero. NaN stays NaN
    whatever dropout drew; a head initialised to zero (torchvision's ViT, built fresh) makes every output zero
    whatever dropout drew before it; a forward that returns no tensor shows nothing."""
    return any(bool((~t.isnan() & (t != 0)).any()) for t in outputs)


class _RandomStreams:
    """The random streams the probes seed (the default generators, Python's, NumPy's), taken to be put back:
    whatever a probe forward raises, the caller's next random number is the one it would have drawn."""

    def __init__(self, generators: list[torch.Generator]):
        self.generators = [(g, g.get_state()) for g in generators]
        self.python = random.getstate()
        numpy = sys.modules.get("numpy")
        self.numpy = numpy.random.get_state() if numpy is not None else None

    def restore(self) -> None:
        for g, saved in self.generators:
            g.set_state(saved)
        random.setstate(self.python)
        if self.numpy is not None:
            sys.modules["numpy"].random.set_state(self.numpy)


def max_abs_diff(outputs: list[torch.Tensor], reference: list[torch.Tensor] | None) -> float | None:
    """Largest elementwise difference from the reference outputs; None where they cannot be compared
    element for element (another count of tensors, or a tensor of another shape: broadcasting would
    compare elements that do not correspond)."""
    if reference is None or len(reference) != len(outputs) or \
            any(a.shape != b.shape for a, b in zip(outputs, reference)):
        return None
    return max((float((a.float() - b.float()).abs().max()) for a, b in zip(outputs, reference) if a.numel()),
               default=0.0)


def probe_behaviour(model: nn.Module, forward: Callable[[], object], reference: list[torch.Tensor] | None,
                    seed: int, generators: list[torch.Generator], instrumented: bool = True,
                    autocast=None) -> dict:
    """What the mode did, from the probe forwards (``_probe``); the random streams they seed are put back
    afterwards, raised or not."""
    streams = _RandomStreams(generators)
    try:
        return _probe(model, forward, reference, seed, generators, instrumented, autocast)
    finally:
        streams.restore()


def _probe(model: nn.Module, forward: Callable[[], object], reference: list[torch.Tensor] | None,
           seed: int, generators: list[torch.Generator], instrumented: bool = True, autocast=None) -> dict:
    """Forwards through ``forward()`` under seed, seed + 1 and, if they differ, seed again; what the mode did.

    ``reference``: outputs of the same input under eval_no_grad, for max_abs_diff_vs_eval_no_grad.
    Buffers are restored after each forward; the caller's mode undo restores everything else.
    ``instrumented=False`` (a compiled forward): no operator trace or module hooks. A compiled graph's
    kernels are invisible to both, and a dispatch mode around a compiled call leaves dynamo
    intercepting nothing afterwards (torch 2.13): what only they observe is null. No backward
    either (grads_computed null; a train step counts its own). ``autocast``: the case's autocast
    (compiled.autocast_entry), entered again beneath the operator trace where eager has it on (eager_autocast).
    """
    restore_buffers = _buffer_restorer(model)
    norm_buffers = [b for m in model.modules() if isinstance(m, _BATCHNORM) for b in m.buffers()]
    norms_before = [b.detach().clone() for b in norm_buffers]
    trace = OpTrace(generators) if instrumented else contextlib.nullcontext()
    probes = _BatchNormProbes(model) if instrumented else contextlib.nullcontext()
    seed_everything(seed)
    with probes, above_eager_autocast(trace, autocast if instrumented else None):
        out = forward()
    outputs = output_tensors(out)
    first = _detached(out)
    bn_updated = any(not torch.equal(a, b) for a, b in zip(norms_before, norm_buffers))
    graph_recorded = any(t.requires_grad and t.grad_fn is not None for t in outputs)
    grads = 0 if instrumented else None  # compiled: a probe's backward would compile the backward graph
    if graph_recorded and instrumented:  # before the case's own first train step, hiding its compile time
        grads = _parameters_reached(model, outputs)
    del out, outputs
    restore_buffers()

    def under(probe_seed: int) -> list[torch.Tensor]:
        seed_everything(probe_seed)
        outputs = _detached(forward())
        restore_buffers()
        return outputs

    stochastic, evidence = _stochastic(first, under, seed, trace.rng_ops if instrumented else None)
    diff = max_abs_diff(first, reference)
    has_transformer = any(isinstance(m, _TRANSFORMER_LAYERS) for m in model.modules())
    return {
        "dropout_active": stochastic,
        "dropout_evidence": evidence,
        "stochastic_ops": list(trace.rng_ops) if instrumented else None,
        "bn_batch_stats": any(probes.batch_stats) if instrumented and probes.norms else None,
        "bn_stats_updated": bn_updated if norm_buffers else None,
        "output_dtype": next((str(t.dtype) for t in first if t.is_floating_point()), None),
        "graph_recorded": graph_recorded,
        "grads_computed": grads,
        "fastpath": bool(_FASTPATH_OPS & trace.ops) if instrumented and has_transformer else None,
        "max_abs_diff_vs_eval_no_grad": diff,
    }


def _buffer_restorer(model: nn.Module) -> Callable[[], None]:
    """A function that puts every buffer of ``model`` back as it is now (a probe forward may update them)."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]

    def restore_buffers():
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    return restore_buffers


def _parameters_reached(model: nn.Module, outputs: list[torch.Tensor]) -> int:
    """How many parameters a backward from ``outputs`` gives a gradient; every .grad is left as it was."""
    before = {id(p): p.grad for p in model.parameters()}
    for p in model.parameters():
        p.grad = None
    sum(t.float().sum() for t in outputs if t.requires_grad).backward()
    grads = sum(1 for p in model.parameters() if p.grad is not None)
    for p in model.parameters():
        p.grad = before[id(p)]
    return grads


def _stochastic(first: list[torch.Tensor], under: Callable[[int], list[torch.Tensor]], seed: int,
                rng_ops: list[str] | None) -> tuple[bool | None, str | None]:
    """(dropout_active, dropout_evidence): whether the seed decides the outputs, from the first (traced)
    forward's and those of forwards run again ``under`` a seed. ``rng_ops``: the operators the trace saw
    draw random numbers; None where there was no trace."""
    instrumented = rng_ops is not None
    other = under(seed + 1)
    if not _comparable(first):  # the outputs cannot say: the random draws observed decide
        return (bool(rng_ops), "random_ops") if instrumented else (None, None)
    if _same(first, other):
        return False, "outputs"
    again = under(seed)  # the seed mattered, or the forward does not repeat at all: which?
    if _same(first, again):
        return True, "outputs"
    if not instrumented:
        return False, "outputs"
    # the traced forward may round apart (inference_mode: other kernels)
    if _same(again, other):
        return False, "outputs"  # untraced, the seed did not matter
    if _same(again, under(seed)):
        return True, "outputs"  # untraced, the seed mattered and repeats
    return bool(rng_ops), "random_ops"
