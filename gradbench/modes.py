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
TRAINABLE = ("all", "none", "head")


@dataclass(frozen=True)
class Mode:
    name: str
    training: bool
    grad_mode: str  # one of GRAD_MODES
    trainable: str  # one of TRAINABLE: which parameters keep requires_grad=True
    description: str

    @property
    def records_graph(self) -> bool:
        """Whether autograd can record a graph: grad enabled and something to differentiate."""
        return self.grad_mode == "enabled" and self.trainable != "none"

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
        Mode("finetune_head", True, "enabled", "head", "train mode; only the model's last nn.Linear trainable"),
    )
}
CORE_MODES = ("train", "eval", "no_grad", "eval_no_grad", "frozen")
DEFAULT_MODES = CORE_MODES + ("eval_inference_mode",)


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; valid modes: {', '.join(MODES)}") from None


def head_linear(model: nn.Module) -> nn.Linear:
    """The model's last nn.Linear in registration order: what finetune_head trains."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"mode 'finetune_head' needs an nn.Linear in the model; {type(model).__name__} has none"
        )
    return linears[-1]


class AppliedMode:
    """A mode in force on one model. ``undo()`` restores what ``apply_mode`` changed.

    Restored: each module's training flag, each parameter's requires_grad, every buffer's
    value (BatchNorm running statistics and counters among them), so one case cannot leak
    state into the next and modes can run in any order on one model object.
    """

    def __init__(self, model: nn.Module, mode: Mode):
        self.model = model
        self.mode = mode
        # Validate before touching anything, so a failed apply leaves the model as it was.
        head = head_linear(model) if mode.trainable == "head" else None
        self._training = [(m, m.training) for m in model.modules()]
        self._requires_grad = [(p, p.requires_grad) for p in model.parameters()]
        self._buffers = [(b, b.detach().clone()) for b in model.buffers()]
        model.train(mode.training)
        head_params = {id(p) for p in head.parameters()} if head is not None else set()
        for p in model.parameters():
            if mode.trainable == "all":
                p.requires_grad_(True)
            elif mode.trainable == "none":
                p.requires_grad_(False)
            else:
                p.requires_grad_(id(p) in head_params)
        self.undone = False

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


def apply_mode(model: nn.Module, mode: str | Mode) -> AppliedMode:
    """Put ``model`` into ``mode``; use as a context manager or call ``.undo()``."""
    return AppliedMode(model, get_mode(mode) if isinstance(mode, str) else mode)
