"""What the asv and pytest-benchmark suites share: their grids, and one case prepared to time.

Both harnesses time with their own timers (that is what they are for); everything else comes from
gradbench's one pipeline (pipeline.prepare: state, behaviour, memory, flops) and its warm-up rule
(measure/timing.warm_up), so the numbers mean the same thing in every front-end.

The grid is named by $GRADBENCH_GRID. Its name was GRADBENCH_ASV_GRID before the pytest-benchmark
suite read it too; that name is still honoured where GRADBENCH_GRID is unset (or empty).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import torch

from .case import Case
from .modes import CORE_MODES, DEFAULT_MODES, MODES
from .measure.timing import clock_for, steps_per_block, warm_up
from .pipeline import WARMUP_STEPS
from .plan import Grid
from .session import Session, not_applicable

GRID_VARIABLE = "GRADBENCH_GRID"
OLD_GRID_VARIABLE = "GRADBENCH_ASV_GRID"  # read where GRID_VARIABLE is not set
# torch.compile and autocast axes, off unless asked for (lists as on the command line: "none,default")
AXIS_VARIABLES = {"compile": "GRADBENCH_COMPILE", "autocast": "GRADBENCH_AUTOCAST"}
GRIDS = {
    # the suites' own test: two modes, and cuda only where there is one, so that asv starts 10 processes
    # on a CPU machine (4-5 s each), not quick's 50
    "smoke": Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(8,),
                  devices=("cpu", "cuda") if torch.cuda.is_available() else ("cpu",), modes=("train", "eval_no_grad")),
    # CI and a first look: a few processes' worth
    "quick": Grid(models=("mlp",), sizes=("tiny",), batch_sizes=(8,), devices=("cpu", "cuda"), modes=CORE_MODES),
    # a laptop: under 15 minutes of asv on a 2-core CPU (asv starts a process per combination)
    "default": Grid(models=("mlp", "cnn", "transformer"), sizes=("tiny",), batch_sizes=(32,),
                    devices=("cpu", "cuda"), modes=DEFAULT_MODES),
    # a GPU box
    "full": Grid(models=("mlp", "cnn", "transformer"), sizes=("tiny", "small", "medium", "large"),
                 batch_sizes=(1, 8, 64, 256), devices=("cpu", "cuda"), modes=tuple(MODES)),
}


def grid_from_env(default: str = "quick", compile: str | None = None, autocast: str | None = None) -> Grid:
    """The named grid, with the compile and autocast axes from the arguments, else the environment."""
    variable = GRID_VARIABLE if os.environ.get(GRID_VARIABLE) else OLD_GRID_VARIABLE
    name = os.environ.get(variable, default) or default
    if name not in GRIDS:
        raise ValueError(f"unknown {variable} {name!r}; valid grids: {', '.join(GRIDS)}")
    return with_axes(GRIDS[name], compile, autocast)


def with_axes(grid: Grid, compile: str | None = None, autocast: str | None = None) -> Grid:
    """``grid`` with compile and autocast settings ("none,default"); unset: $GRADBENCH_COMPILE and
    $GRADBENCH_AUTOCAST, else eager. Names are checked here; a CUDA-only one is skipped on cpu."""
    from .compiled import validate_setting
    from .settings import list_arg

    axes = {}
    for axis, given in (("compile", compile), ("autocast", autocast)):
        text = given if given is not None else os.environ.get(AXIS_VARIABLES[axis], "")
        values = tuple(list_arg([text])) or ("none",)
        for value in values:
            validate_setting(axis, value, "cuda")
        axes[axis] = values
    return dataclasses.replace(grid, **axes)


class NotApplicable(NotImplementedError):
    """A combination that cannot run here (cuda without a GPU, a train step without a graph).

    asv turns NotImplementedError raised in setup into a skipped benchmark.
    """


# One per process: a model is built once, whatever number of benchmarks use it.
_session = Session(keep_workloads=True)


def workload(model: str, size: str, batch_size: int, device: str, dtype: str = "float32"):
    """The workload a BenchmarkCase of these values measures on (the same model object)."""
    return _session.workload(Case(model, size, batch_size, device, dtype))


class BenchmarkCase:
    """A case through gradbench's pipeline, every pass but the timing, which the harness does itself.

    ``record`` holds what the pipeline measured (memory, behaviour, flops), the same fields as
    ``gradbench run`` records; ``step()`` is the step, already warmed (``per_step_s``: the fastest step
    the warm-up saw), and ``block()`` a sample's worth of steps; ``close()`` undoes everything.
    """

    def __init__(self, model: str, size: str, batch_size: int, device: str, mode: str, step: str = "forward",
                 dtype: str = "float32", compile: str = "none", autocast: str = "none"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise NotApplicable("no CUDA GPU on this machine")
        case = Case(model, size, batch_size, device, dtype, mode, step, compile=compile, autocast=autocast)
        reason = not_applicable(case)
        if reason:
            raise NotApplicable(reason)
        case.validate()
        self.workload = _session.workload(case)
        self.device = self.workload.device
        self._stack = contextlib.ExitStack()
        prepared = self._stack.enter_context(_session.prepared(case, workload=self.workload))
        self.record, self._step = prepared.record, prepared.step
        # warm by gradbench's own rule, so that even a harness's first timed call (asv --quick's only
        # one) is a warm step, as in `gradbench run`
        self.per_step_s, self.warmup_s = warm_up(self._step, clock_for(self.device), warmup_steps=WARMUP_STEPS,
                                                 max_time_s=case.max_time_s)
        self.steps_per_block = steps_per_block(self.per_step_s)  # gradbench's sample: a block of >= 1 ms
        if prepared.first_call_s is not None:  # compiled: the first call's extra time, as gradbench run has it
            self.record["compile_time_s"] = prepared.first_call_s - self.per_step_s

    def step(self) -> None:
        """One step, synchronised on CUDA so that a harness's wall-clock timer sees all of it."""
        self._step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def block(self) -> None:
        """``steps_per_block`` steps, synchronised once on CUDA: one sample as gradbench takes it, for a
        harness whose timer divides by the step count (the asv suite's per-step timer)."""
        for _ in range(self.steps_per_block):
            self._step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self._stack.close()
