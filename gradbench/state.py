"""The global torch state a case depends on: set explicitly for every case, and any change made by a
model's own code named and undone, so that one model cannot silently change the numbers of the next.

A user model module that calls ``torch.set_grad_enabled(False)`` at import, changes the default
dtype, the thread count or cudnn.benchmark, or re-seeds the RNG would otherwise make every later
case in that process measure something other than what its record says.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def _set_default_device(value: str) -> None:
    torch.set_default_device(None if value == "cpu" else value)


def _set_cudnn_benchmark(value: bool) -> None:
    torch.backends.cudnn.benchmark = value


@dataclass(frozen=True)
class Switch:
    name: str
    get: Callable[[], object]
    set: Callable[[object], None] | None  # None: only settable as a scope (inference mode)


SWITCHES = (
    Switch("grad mode enabled", torch.is_grad_enabled, torch.set_grad_enabled),
    Switch("inference mode", torch.is_inference_mode_enabled, None),
    Switch("default dtype", torch.get_default_dtype, torch.set_default_dtype),
    Switch("default device", lambda: str(torch.get_default_device()), _set_default_device),
    Switch("threads", torch.get_num_threads, torch.set_num_threads),
    Switch("cudnn.benchmark", lambda: bool(torch.backends.cudnn.benchmark), _set_cudnn_benchmark),
    Switch("deterministic algorithms", torch.are_deterministic_algorithms_enabled, torch.use_deterministic_algorithms),
    Switch("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    Switch("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    Switch("RNG seed", torch.initial_seed, torch.manual_seed),
)


def expected_state(seed: int | None, threads: int | None = None, cudnn_benchmark: bool = False) -> dict:
    """What every case runs under: torch's defaults, the process's thread count, the case's settings.

    ``seed=None``: the RNG is left out (a check between cases: each case seeds its own).
    """
    expected = {
        "grad mode enabled": True,
        "inference mode": False,
        "default dtype": torch.float32,
        "default device": "cpu",
        "threads": torch.get_num_threads() if threads is None else threads,
        "cudnn.benchmark": cudnn_benchmark,
        "deterministic algorithms": False,
        "anomaly detection": False,
        "float32 matmul precision": "highest",
        "RNG seed": seed,
    }
    if seed is None:
        del expected["RNG seed"]
    return expected


def snapshot() -> dict:
    return {s.name: s.get() for s in SWITCHES}


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
    what the body changed, and the state and RNG streams found on entry are restored, so that a
    library caller's own settings survive a case."""

    def __init__(self, expected: dict):
        self.expected = expected
        self.changes: list[str] = []

    def __enter__(self) -> "CleanState":
        self._entry = snapshot()
        self._rng = torch.get_rng_state()
        self._cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
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


def describe(culprit: str, when: str, changes: list[str]) -> str | None:
    """The warning text for a record, or None when nothing changed."""
    if not changes:
        return None
    return f"{culprit} changed global torch state {when}: {'; '.join(changes)} (restored)"
