"""The configurations gradbench compares, as data, and how one is applied to a model and undone.

A mode is three independent switches: the module training flag, the grad mode the step runs
under, and which parameters require grad. Keeping them as data lets every front-end (runner,
explain table, asv, pytest-benchmark) agree on exactly what a mode name means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import nn

GRAD_MODES = ("enabled", "no_grad", "inference_mode")
TRAINABLE = ("all", "none", "head", "as_built")
AS_BUILT = None  # a training flag left as the model's factory set it


@dataclass(frozen=True)
class Mode:
    name: str
    training: bool | None  # None: each module's flag as built
    grad_mode: str  # one of GRAD_MODES
    trainable: str  # one of TRAINABLE: which parameters keep requires_grad=True ("as_built": as the factory left them)
    description: str

    @property
    def records_graph(self) -> bool:
        """Whether autograd can record a graph: grad enabled and something to differentiate (as_built: as
        far as the mode knows; ``graph_possible`` asks the model)."""
        return self.grad_mode == "enabled" and self.trainable != "none"

    def graph_possible(self, model: nn.Module) -> bool:
        """records_graph, and for as_built: a parameter of the model as built requires grad."""
        if self.trainable == "as_built":
            return self.grad_mode == "enabled" and any(p.requires_grad for p in model.parameters())
        return self.records_graph

    def grad_context(self) -> ContextManager:
        """The grad mode set explicitly, with the construct a user writes (enable_grad for the grad-enabled
        modes): grad mode left off by other code changes nothing. Inference mode is kept off around the
        whole case by the pipeline's clean state, so it is not switched off again on every step."""
        if self.grad_mode == "no_grad":
            return torch.no_grad()
        if self.grad_mode == "inference_mode":
            return torch.inference_mode()
        return torch.enable_grad()


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("train", True, "enabled", "all", "model.train(); grad enabled; all parameters trainable"),
        Mode("eval", False, "enabled", "all", "model.eval() only"),
        Mode("no_grad", True, "no_grad", "all", "torch.no_grad() only (model left in train mode)"),
        Mode("eval_no_grad", False, "no_grad", "all", "model.eval() + torch.no_grad()"),
        Mode("frozen", True, "enabled", "none", "requires_grad=False on every parameter (train mode)"),
        Mode("frozen_eval", False, "enabled", "none", "requires_grad=False on every parameter + model.eval()"),
        Mode("inference_mode", True, "inference_mode", "all", "torch.inference_mode() only"),
        Mode("eval_inference_mode", False, "inference_mode", "all", "model.eval() + torch.inference_mode()"),
        Mode("finetune_head", True, "enabled", "head", "train mode; only the head trainable: the last nn.Linear "
             "the output depends on, or --head NAME"),
        Mode("as_built", AS_BUILT, "enabled", "as_built", "the model exactly as its factory returned it: training "
             "flags and requires_grad untouched; grad enabled"),
    )
}
CORE_MODES = ("train", "eval", "no_grad", "eval_no_grad", "frozen")
DEFAULT_MODES = CORE_MODES + ("eval_inference_mode",)


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; valid modes: {', '.join(MODES)}") from None


def last_linear(model: nn.Module) -> str:
    """The name of the model's last registered nn.Linear: finetune_head's head where none is given."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"mode 'finetune_head' needs an nn.Linear in the model; {type(model).__name__} has none")
    return linears[-1]


def named_head(model: nn.Module, name: str) -> nn.Module:
    """The module --head names, which must hold parameters of its own (what finetune_head trains)."""
    modules = dict(model.named_modules())
    if name not in modules:
        linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
        raise ValueError(f"--head {name!r}: {type(model).__name__} has no such module; its nn.Linear modules: "
                         f"{', '.join(linears[-8:]) or 'none'}")
    if not any(True for _ in modules[name].parameters()):
        raise ValueError(f"--head {name!r} has no parameters to train")
    return modules[name]


def output_head(model: nn.Module, forward: Callable[[], object]) -> str:
    """The name of the nn.Linear that ran last among those the output depends on: the head a fine-tune
    trains. Observed, not assumed: the last registered Linear may be off the output path (an auxiliary
    branch, a pooler whose result is dropped). One forward with grad enabled and one backward; the
    weights and buffers are the caller's to restore, every parameter's requires_grad and .grad are
    put back here.

    The forward hooks are gone before the backward: activation checkpointing runs forwards again in it,
    which would make a checkpointed Linear the last to run. The backward is .backward(), not
    autograd.grad, which reentrant checkpointing refuses."""
    last_linear(model)  # one exists, or the error says so
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    ran: list[nn.Module] = []
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        for lin in names:
            lin.weight.requires_grad_(True)
        hooks = [m.register_forward_hook(lambda m, i, o: ran.append(m)) for m in names]
        try:
            with torch.enable_grad():
                out = forward()
        finally:
            for h in hooks:
                h.remove()
        from .measure.behaviour import output_tensors

        outputs = [t for t in output_tensors(out) if (t.is_floating_point() or t.is_complex()) and t.requires_grad]
        if not outputs:
            raise ValueError("mode 'finetune_head': the output depends on no nn.Linear's weight")
        for p, _, _ in saved:
            p.grad = None
        with torch.enable_grad():
            sum((t.abs() if t.is_complex() else t).float().sum() for t in outputs).backward()
        used = {m for m in names if m.weight.grad is not None}
    finally:
        for p, rg, grad in saved:
            p.requires_grad_(rg)
            p.grad = grad
    on_path = [m for m in ran if m in used]
    if not on_path:
        raise ValueError("mode 'finetune_head': the output depends on no nn.Linear's weight")
    return names[on_path[-1]]


class AppliedMode:
    """A mode in force on one model. ``undo()`` restores what ``apply_mode`` changed.

    Restored: each module's training flag, each parameter's requires_grad, every buffer's
    value (BatchNorm running statistics and counters among them), so one case cannot leak
    state into the next and modes can run in any order on one model object.
    """

    def __init__(self, model: nn.Module, mode: Mode, head: str | None = None):
        """``head``: the module finetune_head trains (default: the last registered nn.Linear; the pipeline
        passes the one the output depends on, or --head)."""
        self.model = model
        self.mode = mode
        # Validate before touching anything, so a failed apply leaves the model as it was.
        self.head = (head or last_linear(model)) if mode.trainable == "head" else None
        head_module = named_head(model, self.head) if self.head is not None else None
        self._training = [(m, m.training) for m in model.modules()]
        self._requires_grad = [(p, p.requires_grad) for p in model.parameters()]
        self._buffers = [(b, b.detach().clone()) for b in model.buffers()]
        if mode.training is not AS_BUILT:
            model.train(mode.training)
        head_params = {id(p) for p in head_module.parameters()} if head_module is not None else set()
        for p in model.parameters():
            if mode.trainable == "all":
                p.requires_grad_(True)
            elif mode.trainable == "none":
                p.requires_grad_(False)
            elif mode.trainable == "head":
                p.requires_grad_(id(p) in head_params)
        self.undone = False
        self._set_training = [(m, m.training) for m in model.modules()]  # as this mode set them
        self._set_requires_grad = [(p, p.requires_grad) for p in model.parameters()]

    def overrides(self) -> str | None:
        """What this mode switched back that the model was built with: modules built in eval put in train,
        parameters built frozen made trainable (the user's own configuration, not measured by this mode:
        as_built measures it). None when the mode overrode nothing the user set."""
        names = {m: n or type(self.model).__name__ for n, m in self.model.named_modules()}
        pnames = {p: n for n, p in self.model.named_parameters()}
        trained = [names[m] for m, was in self._training if not was and m.training]
        thawed = [pnames.get(p, "?") for p, was in self._requires_grad if not was and p.requires_grad]
        parts = []
        if thawed:
            parts.append(f"made {len(thawed)} parameter(s) trainable that the model was built frozen "
                         f"({_few(thawed)})")
        if trained:
            parts.append(f"put {len(trained)} module(s) built in eval mode in train mode ({_few(trained)})")
        return f"mode {self.mode.name!r} " + " and ".join(parts) if parts else None

    def drifted(self) -> list[str]:
        """What the model's own code switched back since this mode was applied (a forward that calls
        self.train() undoes eval; one that calls requires_grad_(True) undoes frozen), named; then set as
        the mode set it again, so that the next pass measures the mode its record names."""
        names = {m: n or type(self.model).__name__ for n, m in self.model.named_modules()}
        pnames = {p: n for n, p in self.model.named_parameters()}
        modules = [(m, was) for m, was in self._set_training if m.training != was]
        params = [(p, was) for p, was in self._set_requires_grad if p.requires_grad != was]
        out = [f"put {len(group)} module(s) in {'eval' if was else 'train'} mode ({_few([names[m] for m, _ in group])})"
               for was in (False, True) if (group := [(m, w) for m, w in modules if w == was])]
        out += [f"set requires_grad={not was} on {len(group)} parameter(s) ({_few([pnames.get(p, '?') for p, _ in group])})"
                for was in (False, True) if (group := [(p, w) for p, w in params if w == was])]
        for m, was in modules:
            m.training = was
        for p, was in params:
            p.requires_grad_(was)
        return out

    def grad_context(self) -> ContextManager:
        return self.mode.grad_context()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def run(self, fn: Callable, *args, **kwargs):
        """Call fn under this mode's grad context."""
        with self.mode.grad_context():
            return fn(*args, **kwargs)

    def undo(self) -> None:
        if self.undone:
            return
        for m, training in self._training:
            m.training = training
        for p, rg in self._requires_grad:
            p.requires_grad_(rg)
        with torch.no_grad():
            for b, saved in self._buffers:
                b.copy_(saved)
        self.undone = True

    def __enter__(self) -> "AppliedMode":
        return self

    def __exit__(self, *exc) -> None:
        self.undo()


def _few(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f", and {len(names) - most} more" if len(names) > most else "")


def apply_mode(model: nn.Module, mode: str | Mode, head: str | None = None) -> AppliedMode:
    """Put ``model`` into ``mode``; use as a context manager or call ``.undo()``. ``head``: finetune_head's."""
    return AppliedMode(model, get_mode(mode) if isinstance(mode, str) else mode, head)
