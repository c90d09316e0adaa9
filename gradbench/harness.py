"""What the asv and pytest-benchmark suites share: their grids, and one prepared case to time.

Both harnesses time with their own timers (that is what they are for); everything else (modes,
models, memory measurement, behaviour probes) comes from gradbench, so the numbers mean the same
thing in every front-end.
"""
from __future__ import annotations

import os

import torch

from .case import Workload, step_function, validate_dtype
from .measure.behaviour import probe_behaviour
from .measure.memory import measure_memory
from .modes import CORE_MODES, DEFAULT_MODES, MODES, apply_mode
from .sweep import Grid

GRID_VARIABLE = "GRADBENCH_ASV_GRID"
GRIDS = {
    # CI and a first look: a few processes' worth
    "quick": Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(8,), devices=("cpu", "cuda"), modes=CORE_MODES),
    # a laptop: under 15 minutes of asv on a 2-core CPU (asv starts a process per combination)
    "default": Grid(models=("mlp", "cnn", "transformer"), sizes=("tiny",), batch_sizes=(32,),
                    devices=("cpu", "cuda"), modes=DEFAULT_MODES),
    # a GPU box
    "full": Grid(models=("mlp", "cnn", "transformer"), sizes=("tiny", "small", "medium", "large"),
                 batch_sizes=(1, 8, 64, 256), devices=("cpu", "cuda"), modes=tuple(MODES)),
}


def grid_from_env(default: str = "quick") -> Grid:
    name = os.environ.get(GRID_VARIABLE, default) or default
    if name not in GRIDS:
        raise ValueError(f"unknown {GRID_VARIABLE} {name!r}; valid grids: {', '.join(GRIDS)}")
    return GRIDS[name]


class NotApplicable(NotImplementedError):
    """A combination that cannot run here (cuda without a GPU, a train step without a graph).

    asv turns NotImplementedError raised in setup into a skipped benchmark.
    """


_workloads: dict[tuple, Workload] = {}


def workload(model: str, size: str, batch_size: int, device: str, dtype: str = "float32", seed: int = 0):
    """One Workload per process and key: a model is built once, whatever number of benchmarks use it."""
    key = (model, size, batch_size, device, dtype, seed)
    if key not in _workloads:
        _workloads[key] = Workload(*key)
    return _workloads[key]


class PreparedCase:
    """A mode applied to a built model, with its step ready to call; ``close()`` undoes everything."""

    def __init__(self, model: str, size: str, batch_size: int, device: str, mode: str, step: str = "forward",
                 dtype: str = "float32"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise NotApplicable("no CUDA GPU on this machine")
        validate_dtype(dtype, device)
        if step == "train_step" and not MODES[mode].records_graph:
            raise NotApplicable(f"mode {mode!r} records no graph: no train step")
        self.identity = dict(model=model, size=size, batch_size=batch_size, device=device, dtype=dtype,
                             mode=mode, step=step)
        self.workload = workload(model, size, batch_size, device, dtype)
        self.device = self.workload.device
        self._restore = self.workload.parameters_restored()
        self._restore.__enter__()
        self.applied = apply_mode(self.workload.model, mode)
        self._step = step_function(self.workload, self.applied, step)

    def step(self) -> None:
        """One step, synchronised on CUDA so that a harness's wall-clock timer sees all of it."""
        self._step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def memory(self) -> dict:
        self._step()  # warm-up: lazy initialisation is not the step's cost
        return measure_memory(self._step, self.device, self.workload.held_tensors())

    def behaviour(self) -> dict:
        return probe_behaviour(self.workload.model, lambda: self.applied.run(self.workload.forward),
                               self.workload.reference_outputs())

    def close(self) -> None:
        self.applied.undo()
        self._restore.__exit__(None, None, None)

