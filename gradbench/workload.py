"""A Workload: one built model and one input batch on a device and dtype, shared by every mode run on it,
so that weights and input are identical across modes; and the step each mode runs on it.

What is the same for every mode of a workload is computed once and kept: the reference outputs
under eval_no_grad, the forward's flops, and each mode's observed behaviour (a forward's
behaviour does not depend on whether a train step follows it).
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import models as _models
from .compiled import autocast_entry
from .measure.behaviour import default_generators, output_tensors, probe_behaviour
from .measure.flops import count_flops
from .measure.tensors import parameter_bytes
from .modes import AppliedMode, apply_mode, named_head, output_head
from . import state

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SERIALS = itertools.count(1)  # one per Workload built in this process: a compiled model is one workload's


def resolved_device(device: str) -> torch.device:
    """'cuda' -> cuda:N of the current device, so memory and clocks always name one GPU."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def placed(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``model.to(device=device, dtype=dtype)``; a model on fake tensors (a prediction, predict.py) tensor by
    tensor, because Module.to swaps each fake parameter in place, which the weak references FakeTensorMode
    keeps to them forbid. Shared tensors (tied weights) stay shared; only floating-point ones are cast."""
    from torch._subclasses.fake_tensor import FakeTensor

    if not any(isinstance(t, FakeTensor) for t in itertools.chain(model.parameters(), model.buffers())):
        return model.to(device=device, dtype=dtype)
    done: dict[int, torch.Tensor] = {}

    def moved(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=device, dtype=dtype if t.is_floating_point() else None)

    with torch.no_grad():
        for module in model.modules():
            for name, p in module._parameters.items():
                if p is not None:
                    if id(p) not in done:
                        done[id(p)] = nn.Parameter(moved(p), requires_grad=p.requires_grad)
                    module._parameters[name] = done[id(p)]
            for name, b in module._buffers.items():
                if b is not None:
                    done.setdefault(id(b), moved(b))
                    module._buffers[name] = done[id(b)]
    return model


class Workload:
    """One model and one input batch on a device and dtype, shared by every mode run on it."""

    def __init__(self, model: str, size: str, batch_size: int, device: str, dtype: str, seed: int = 0,
                 seq_len: int | None = None, image_size: int | None = None, import_scope=contextlib.nullcontext):
        """The arguments are Case.workload_key's. ``import_scope(model)``: a context around a user model's first
        import in this process (the sweep's workers tell their manager, which holds the import to the case
        timeout)."""
        self.key = (model, size, batch_size, device, dtype, seed, seq_len, image_size)
        self.serial = next(_SERIALS)  # never reused, unlike id() of a freed workload
        self.name = model
        self.device = resolved_device(device)
        guard = state.CleanState(state.expected_state(seed))
        with guard:  # a user module runs its own code here: at import and in its factory
            if _models.is_user_model(model):
                with import_scope(model):
                    _models.load_factory(model)
            built = _models.build_model(model, size, seed, seq_len=seq_len, image_size=image_size)
            self.model: nn.Module = placed(built.model, self.device, DTYPES[dtype])
            self.inputs = _models.input_batch(built.make_input, batch_size, self.device, DTYPES[dtype], seed)
            torch.manual_seed(seed)  # gradbench's own seeding above is not the model's doing
        self.state_warning = state.describe(f"model {model!r}", "while it was imported and built", guard.changes)
        state.announce(self.state_warning)
        self.params = _models.parameter_count(self.model)
        self.param_bytes = parameter_bytes(self.model)
        self.seed = seed
        self.loss: Callable | None = built.loss  # the family's (or factory's) loss(output, batch); None: loss_of
        self._once: dict[str, object] = {}
        self._behaviour: dict[str, dict] = {}
        self._forward_changes: dict[str, list[str]] = {}

    def held_tensors(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers(), *self.inputs.tensors()]

    def forward(self):
        return self.model(*self.inputs.args, **self.inputs.kwargs)

    def loss_from(self, output) -> torch.Tensor:
        """The train step's loss: the family's own on the batch, else the mean of squares of the output."""
        if self.loss is None:
            return loss_of(output)
        loss = self.loss(output, self.inputs.batch)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
            what = f"a tensor of shape {tuple(loss.shape)} and dtype {loss.dtype}" if isinstance(loss, torch.Tensor) \
                else type(loss).__name__
            raise ValueError(f"the loss of model {self.name!r} returned {what}; it must return a floating-point "
                             "scalar tensor")
        return loss

    def _computed_once(self, name: str, compute: Callable[[], object]):
        """compute() the first time it is asked for; None, remembered, where it raises: a model whose eval
        forward fails fails its eval cases (they say why), not the others that compare with it."""
        if name not in self._once:
            try:
                self._once[name] = compute()
            except Exception:
                self._once[name] = None
        return self._once[name]

    def reference_outputs(self) -> list[torch.Tensor] | None:
        """Outputs under eval_no_grad, the usual inference configuration, for comparing modes."""
        def compute():
            with apply_mode(self.model, "eval_no_grad") as applied:
                return [t.detach().clone() for t in output_tensors(applied.run(self.forward))]
        return self._computed_once("reference", compute)

    def head_for(self, requested: str | None = None) -> str:
        """The module finetune_head trains: ``requested`` (--head), checked, or the last nn.Linear the
        output depends on, observed once (a forward and a backward; weights and buffers restored)."""
        if requested is not None:
            named_head(self.model, requested)
            return requested
        if "head" not in self._once:
            try:
                with self.parameters_restored(), self.buffers_restored():
                    self._once["head"] = output_head(self.model, self.forward)
            except ValueError as exc:
                self._once["head"] = exc
        if isinstance(self._once["head"], Exception):
            raise self._once["head"]
        return self._once["head"]

    def forward_flops(self) -> int | None:
        """Forward arithmetic, counted in eval mode on the graph-recording path (the fast path's fused
        kernels are opaque to the counter)."""
        def compute():
            with apply_mode(self.model, "eval") as applied:
                return count_flops(lambda: applied.run(self.forward))
        return self._computed_once("forward flops", compute)

    def behaviour(self, applied: AppliedMode, forward: Callable[[], object] | None = None,
                  variant: tuple = ("none", "none")) -> dict:
        """What the applied mode does to a forward, observed once per mode and variant (compile,
        autocast: ``forward`` runs it); global state the forward changes inside itself is noted too
        (``forward_state_changes``), even where the step's own grad-mode scope undoes it."""
        name = applied.mode.name
        forward = forward or self.forward
        key = (name, *variant)
        if key not in self._behaviour:
            changes: list[str] = []

            def watched_forward():
                before = state.snapshot()
                out = forward()
                changes.extend(c for c in state.differences(state.snapshot(), before) if c not in changes)
                return out

            self._behaviour[key] = probe_behaviour(self.model, lambda: applied.run(watched_forward),
                                                    self.reference_outputs(), self.seed,
                                                    default_generators(self.device), instrumented=variant[0] == "none",
                                                    autocast=autocast_entry(self.device, variant[1]))
            self._forward_changes[name] = changes
            state.announce(state.describe(f"model {self.name!r}", f"inside its forward in mode {name!r}", changes))
        return dict(self._behaviour[key])

    def forward_state_changes(self, mode: str) -> list[str]:
        return self._forward_changes.get(mode, [])

    @contextlib.contextmanager
    def buffers_restored(self):
        """Undo what a step does to buffers (BatchNorm running statistics), as the mode's undo does."""
        saved = [(b, b.detach().clone()) for b in self.model.buffers()]
        try:
            yield
        finally:
            with torch.no_grad():
                for b, s in saved:
                    b.copy_(s)

    @contextlib.contextmanager
    def parameters_restored(self):
        """Undo an optimizer's updates, so every mode sees the same weights. Fake weights (a prediction) have
        no values to undo: only their gradients are dropped (copying Llama 8B's fake weights cost a second a
        case)."""
        from torch._subclasses.fake_tensor import is_fake

        params = list(self.model.parameters())
        saved = [None if is_fake(p) else p.detach().clone() for p in params]
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    if s is not None:
                        p.copy_(s)
                    p.grad = None


def loss_of(out) -> torch.Tensor:
    """A scalar loss from any model output: mean of squares of every output tensor."""
    tensors = [t for t in output_tensors(out) if t.is_floating_point()]
    if not tensors:
        raise ValueError("the model returned no floating-point tensor to compute a loss from")
    return sum(t.float().pow(2).mean() for t in tensors)


@dataclass
class Step:
    """One step under an applied mode (``run``), and what must be dropped before the next one is measured."""

    run: Callable[[], None]
    optimizer: torch.optim.Optimizer | None = None

    def settle(self) -> None:
        """Before a train step no gradients are held: the one definition of the baseline on every device."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def state_tensors(self) -> list[torch.Tensor]:
        """Gradients and optimizer state: held between steps, beside the workload's own tensors."""
        if self.optimizer is None:
            return []
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        state = [t for s in self.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        return grads + state


def make_step(workload: Workload, applied: AppliedMode, step: str,
              forward: Callable[[], object] | None = None) -> Step:
    """The step every pass runs, under the mode's explicit grad context. ``forward``: what runs the model
    (default the eager forward; compiled.forward_for for compile and autocast, the loss outside autocast)."""
    forward = forward or workload.forward
    if step == "forward":
        def forward_step():
            with applied.grad_context():
                forward()  # output released at once
        return Step(forward_step)
    trainable = applied.trainable_parameters()
    if not trainable:
        raise ValueError(f"mode {applied.mode.name!r}: no parameter requires grad, so there is no train step")
    optimizer = torch.optim.SGD(trainable, lr=1e-4)

    def train_step():
        with applied.grad_context():
            optimizer.zero_grad(set_to_none=True)
            workload.loss_from(forward()).backward()
            optimizer.step()
    return Step(train_step, optimizer)
