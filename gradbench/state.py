"""The global torch state a case depends on: set explicitly for every case, and any change made by a
model's own code named and undone, so that one model cannot silently change the numbers of the next.

A user model module that calls ``torch.set_grad_enabled(False)`` at import, changes the default
dtype, the thread count, autocast, a backend's switch (oneDNN, cuDNN, TF32, the attention kernels, flush
denormal, autograd's multithreading), disables the garbage collector, adds a warnings filter that hides
gradbench's warnings,
re-seeds the RNG, registers a hook on every module (torch.nn.modules.module.register_module_forward_hook
and its kin), changes the working directory, leaves a TorchFunctionMode or TorchDispatchMode pushed,
or replaces one of torch's functions (``F.dropout = ...``) or an nn.Module method would otherwise make
every later case in that process measure something other than what its record says.

The switches themselves, and how each is read and set, are listed in global_switches.py; this module
says what each should be for a case, and checks, restores and names them.
"""
from __future__ import annotations

import contextlib
import random
import sys

import torch

from .global_switches import MODE_STACKS, SWITCHES, GlobalHooks, ModeStack, working_directory

TORCH_SEED_MODULUS = 2**64  # torch.initial_seed() reports a seed modulo this (-5 reads back as 2**64 - 5)

_AS_THE_PROCESS_HAS_THEM = ("torch functions", "torch.nn.functional functions", "torch.nn.Module methods",
                            "garbage collector enabled", "warnings filters")  # a harness may disable gc itself
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
    **{name: ModeStack() for name in MODE_STACKS},
}


_KEPT_MODES: dict = {}  # mode stacks that count as expected (modes_kept)


@contextlib.contextmanager
def modes_kept():
    """Within: the function and dispatch modes pushed now count as expected, so a clean state keeps them (a
    prediction runs every pass under torch's FakeTensorMode, which a clean state would otherwise pop)."""
    saved = dict(_KEPT_MODES)
    _KEPT_MODES.update({s.name: s.get() for s in SWITCHES if s.name in MODE_STACKS})
    try:
        yield
    finally:
        _KEPT_MODES.clear()
        _KEPT_MODES.update(saved)


def expected_state(seed: int | None, threads: int | None = None, cudnn_benchmark: bool = False) -> dict:
    """What every case runs under: torch's defaults (no global module hooks, no function or dispatch mode
    pushed), backend switches as the process found them, the process's thread count, working directory,
    garbage collector, warnings filters and torch's functions and nn.Module's methods as they are now (a sweep worker takes this before any model's code runs), and the
    case's settings.

    ``seed=None``: the RNG is left out (a check between cases: each case seeds its own).
    """
    now = {s.name: s.get() for s in SWITCHES if s.name in _AS_THE_PROCESS_HAS_THEM}
    expected = {**_AS_FOUND, **TORCH_DEFAULTS, **now, **_KEPT_MODES,
                "threads": torch.get_num_threads() if threads is None else threads,
                "working directory": working_directory(),
                "cudnn.benchmark": cudnn_benchmark,
                "RNG seed": None if seed is None else seed % TORCH_SEED_MODULUS}
    if seed is None:
        del expected["RNG seed"]
    return expected


def apply(state: dict) -> None:
    """Set every switch ``state`` names. The mode stacks are emptied first, so that a mode a model left
    pushed intercepts none of the setters, and pushed again last where ``state`` holds modes."""
    for s in SWITCHES:
        if s.name in MODE_STACKS and s.name in state and s.get() != ModeStack():
            s.set(ModeStack())
    for s in SWITCHES:
        if s.set is not None and s.name in state and s.get() != state[s.name]:
            s.set(state[s.name])


def differences(found: dict, expected: dict) -> list[str]:
    """'grad mode enabled True -> False' for each switch that is not as expected; a switch of many parts
    (torch's functions) names the parts that changed."""
    out = []
    for name in expected:
        if found[name] != expected[name]:
            parts = getattr(expected[name], "changes_to", None)
            out.extend(parts(found[name]) if parts else [f"{name} {expected[name]!r} -> {found[name]!r}"])
    return out


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
