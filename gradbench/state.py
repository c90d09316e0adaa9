"""The global torch state a case depends on: set explicitly for every case, and any change made by a
model's own code named and undone, so that one model cannot silently change the numbers of the next.

A user model module that calls ``torch.set_grad_enabled(False)`` at import, changes the default
dtype, the thread count, autocast, a backend's switch (oneDNN, cuDNN, TF32, the attention kernels),
re-seeds the RNG, registers a hook on every module (torch.nn.modules.module.register_module_forward_hook
and its kin) or changes the working directory would otherwise make every later case in that process
measure something other than what its record says.
"""
from __future__ import annotations

import os
import random
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.modules import module as _nn_module

SEED_RANGE = 2**64  # torch.initial_seed() reports a seed modulo this (-5 reads back as 2**64 - 5)


def _attribute(owner, name: str) -> "tuple[Callable, Callable]":
    """Getter and setter of a module flag such as torch.backends.mkldnn.enabled."""
    def set_quietly(value):
        with warnings.catch_warnings():  # some flags warn that a newer API exists; the value is what matters
            warnings.simplefilter("ignore")
            setattr(owner, name, value)
    return (lambda: getattr(owner, name)), set_quietly


@dataclass(frozen=True)
class Switch:
    name: str
    get: Callable[[], object]
    set: Callable[[object], None] | None  # None: only settable as a scope (inference mode)


@dataclass(frozen=True)
class GlobalHooks:
    """What torch.nn's dicts of one kind of global module hook hold (and, for backward hooks, whether they
    are full ones): equal when the same hooks are registered; shown by the hooks' names."""

    contents: tuple  # per dict: its (handle id, hook or flag) items
    full_backward: bool | None = None

    def __repr__(self) -> str:
        names = Counter(f"{getattr(h, '__module__', None) or '?'}.{getattr(h, '__qualname__', type(h).__name__)}"
                        for items in self.contents for _, h in items if callable(h))
        return f"[{', '.join(name if n == 1 else f'{name} x{n}' for name, n in names.items())}]"


def _global_hooks(*dicts: str, flag: str | None = None) -> "tuple[Callable, Callable]":
    """Getter and setter of global module hooks kept in torch.nn.modules.module's dicts ``dicts`` (the
    first holds the hooks, any others their options) and, for backward hooks, the ``flag`` of their kind."""
    def get():
        return GlobalHooks(tuple(tuple(getattr(_nn_module, d).items()) for d in dicts),
                           getattr(_nn_module, flag) if flag else None)

    def set_(value: GlobalHooks):
        for name, items in zip(dicts, value.contents):
            held = getattr(_nn_module, name)  # the dict itself: torch's handles remove from this very object
            held.clear()
            held.update(items)
        if flag:
            setattr(_nn_module, flag, value.full_backward)
    return get, set_


def _set_working_directory(path: str) -> None:
    try:
        os.chdir(path)
    except OSError:  # gone since: the change is named all the same
        pass


def _working_directory() -> str:
    try:
        return os.getcwd()
    except OSError:  # removed while current
        return "(removed)"


_backends, _matmul = torch.backends, torch.backends.cuda.matmul
SWITCHES = (
    Switch("grad mode enabled", torch.is_grad_enabled, torch.set_grad_enabled),
    Switch("inference mode", torch.is_inference_mode_enabled, None),
    Switch("default dtype", torch.get_default_dtype, torch.set_default_dtype),
    Switch("default device", lambda: str(torch.get_default_device()),
           lambda v: torch.set_default_device(None if v == "cpu" else v)),
    Switch("threads", torch.get_num_threads, torch.set_num_threads),
    Switch("deterministic algorithms", torch.are_deterministic_algorithms_enabled, torch.use_deterministic_algorithms),
    Switch("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    Switch("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    Switch("autocast (cpu)", lambda: torch.is_autocast_enabled("cpu"), lambda v: torch.set_autocast_enabled("cpu", v)),
    Switch("autocast (cuda)", lambda: torch.is_autocast_enabled("cuda"),
           lambda v: torch.set_autocast_enabled("cuda", v)),
    Switch("mkldnn.enabled", *_attribute(_backends.mkldnn, "enabled")),
    Switch("cudnn.enabled", *_attribute(_backends.cudnn, "enabled")),
    Switch("cudnn.benchmark", *_attribute(_backends.cudnn, "benchmark")),
    Switch("cudnn.deterministic", *_attribute(_backends.cudnn, "deterministic")),
    Switch("cudnn.allow_tf32", *_attribute(_backends.cudnn, "allow_tf32")),
    Switch("cuda.matmul.allow_tf32", *_attribute(_matmul, "allow_tf32")),
    Switch("cuda.matmul.allow_fp16_reduced_precision_reduction",
           *_attribute(_matmul, "allow_fp16_reduced_precision_reduction")),
    Switch("cuda.matmul.allow_bf16_reduced_precision_reduction",
           *_attribute(_matmul, "allow_bf16_reduced_precision_reduction")),
    Switch("flash attention", _backends.cuda.flash_sdp_enabled, _backends.cuda.enable_flash_sdp),
    Switch("memory-efficient attention", _backends.cuda.mem_efficient_sdp_enabled,
           _backends.cuda.enable_mem_efficient_sdp),
    Switch("math attention", _backends.cuda.math_sdp_enabled, _backends.cuda.enable_math_sdp),
    Switch("cudnn attention", _backends.cuda.cudnn_sdp_enabled, _backends.cuda.enable_cudnn_sdp),
    Switch("global module forward pre-hooks", *_global_hooks("_global_forward_pre_hooks")),
    Switch("global module forward hooks", *_global_hooks("_global_forward_hooks", "_global_forward_hooks_with_kwargs",
                                                         "_global_forward_hooks_always_called")),
    Switch("global module backward pre-hooks", *_global_hooks("_global_backward_pre_hooks")),
    Switch("global module backward hooks", *_global_hooks("_global_backward_hooks",
                                                          flag="_global_is_full_backward_hook")),
    Switch("global module registration hooks", *_global_hooks("_global_module_registration_hooks",
                                                              "_global_parameter_registration_hooks",
                                                              "_global_buffer_registration_hooks")),
    Switch("working directory", _working_directory, _set_working_directory),
    Switch("RNG seed", torch.initial_seed, torch.manual_seed),
)
_NO_HOOKS = {s.name: GlobalHooks(tuple(() for _ in s.get().contents)) for s in SWITCHES
             if isinstance(s.get(), GlobalHooks)}


def snapshot() -> dict:
    return {s.name: s.get() for s in SWITCHES}


# Backend switches as this process found them, before any model's code ran (a sweep worker imports
# gradbench first): kept as found. The switches below them are torch's defaults, whatever was set.
_AS_FOUND = snapshot()
TORCH_DEFAULTS = {
    "grad mode enabled": True,
    "inference mode": False,
    "default dtype": torch.float32,
    "default device": "cpu",
    "deterministic algorithms": False,
    "anomaly detection": False,
    "float32 matmul precision": "highest",
    "autocast (cpu)": False,
    "autocast (cuda)": False,
    **_NO_HOOKS,
}


def expected_state(seed: int | None, threads: int | None = None, cudnn_benchmark: bool = False) -> dict:
    """What every case runs under: torch's defaults (no global module hooks), backend switches as the
    process found them, the process's thread count and working directory, and the case's settings.

    ``seed=None``: the RNG is left out (a check between cases: each case seeds its own).
    """
    expected = {**_AS_FOUND, **TORCH_DEFAULTS,
                "threads": torch.get_num_threads() if threads is None else threads,
                "working directory": _working_directory(),
                "cudnn.benchmark": cudnn_benchmark,
                "RNG seed": None if seed is None else seed % SEED_RANGE}
    if seed is None:
        del expected["RNG seed"]
    return expected


def apply(state: dict) -> None:
    for s in SWITCHES:
        if s.set is not None and s.name in state and s.get() != state[s.name]:
            s.set(state[s.name])


def differences(found: dict, expected: dict) -> list[str]:
    """'grad mode enabled True -> False' for each switch that is not as expected."""
    return [f"{name} {expected[name]!r} -> {found[name]!r}" for name in expected if found[name] != expected[name]]


def check_and_restore(expected: dict) -> list[str]:
    """Name every switch that is not as expected, then set them all as expected."""
    found = differences(snapshot(), expected)
    apply(expected)
    return found


class CleanState:
    """Within: every switch as expected (inference mode off, the RNG seeded). On exit, ``changes`` names
    what the body changed, and the state and the RNG streams (torch's, Python's, NumPy's) found on
    entry are restored, so that a library caller's own settings and random numbers survive a case."""

    def __init__(self, expected: dict):
        self.expected = expected
        self.changes: list[str] = []

    def __enter__(self) -> "CleanState":
        self._entry = snapshot()
        self._rng = torch.get_rng_state()
        self._cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self._python_rng = random.getstate()
        numpy = sys.modules.get("numpy")
        self._numpy_rng = numpy.random.get_state() if numpy is not None else None
        apply(self.expected)
        torch.manual_seed(self.expected.get("RNG seed", 0))
        self._no_inference = torch.inference_mode(False)
        self._no_inference.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.changes = differences(snapshot(), self.expected)
        self._no_inference.__exit__(*exc)
        apply(self._entry)
        torch.set_rng_state(self._rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state_all(self._cuda_rng)
        random.setstate(self._python_rng)
        if self._numpy_rng is not None:
            sys.modules["numpy"].random.set_state(self._numpy_rng)


def describe(culprit: str, when: str, changes: list[str]) -> str | None:
    """The warning text for a record, or None when nothing changed."""
    if not changes:
        return None
    return f"{culprit} changed global torch state {when}: {'; '.join(changes)} (restored)"


def announce(warning: str | None) -> None:
    """Say it where people look: one line on stderr (the record keeps it too)."""
    if warning:
        print(f"gradbench: warning: {warning}", file=sys.stderr, flush=True)
