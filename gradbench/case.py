"""A Case (what to run) -> a record (what was measured). ``run_case`` is the one entry point.

A Workload is the built model and its input batch on a device; every mode of a case group reuses
it, so weights and input are identical across modes. One case runs its passes separately, each
after the mode is applied: behaviour (one observed forward), memory (one step), flops, then time.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from . import models as _models
from .env import fingerprint
from .measure.behaviour import output_tensors, probe_behaviour
from .measure.flops import count_flops
from .measure.memory import gradient_bytes, measure_memory, parameter_bytes
from .measure.timing import time_step
from .modes import MODES, apply_mode, get_mode
from .results import empty_record, new_run_id

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("cpu", "cuda")
STEPS = ("forward", "train_step")


def validate_device(device: str) -> None:
    kind, _, index = str(device).partition(":")
    if kind not in DEVICES or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for, but no CUDA GPU is available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); valid devices here: cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")


def validate_dtype(dtype: str, device: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    if dtype == "float16" and not str(device).startswith("cuda"):
        raise ValueError("dtype 'float16' is supported on cuda only; valid dtypes on cpu: float32, bfloat16")


def validate_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"bad batch size {batch_size!r}; batch sizes are integers >= 1")


def validate_step(step: str) -> None:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; valid steps: {', '.join(STEPS)}")


@dataclass(frozen=True)
class Case:
    model: str = "mlp"
    size: str = "small"
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "float32"
    mode: str = "eval_no_grad"
    step: str = "forward"
    seed: int = 0
    max_time_s: float = 2.0

    def validate(self) -> "Case":
        """Raise ValueError naming the bad value and the valid ones."""
        _models.validate_model_name(self.model)
        _models.validate_size(self.model, self.size)
        validate_batch_size(self.batch_size)
        validate_device(self.device)
        validate_dtype(self.dtype, self.device)
        get_mode(self.mode)
        validate_step(self.step)
        if not self.max_time_s > 0:
            raise ValueError(f"bad max time {self.max_time_s!r}; it must be a number of seconds > 0")
        return self

    @property
    def workload_key(self) -> tuple:
        return (self.model, self.size, self.batch_size, self.device, self.dtype, self.seed)

    def identity(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("seed", "max_time_s")}


def loss_of(out) -> torch.Tensor:
    """A scalar loss from any model output: mean of squares of every output tensor."""
    tensors = [t for t in output_tensors(out) if t.is_floating_point()]
    if not tensors:
        raise ValueError("the model returned no floating-point tensor to compute a loss from")
    return sum(t.float().pow(2).mean() for t in tensors)


class Workload:
    """One model and one input batch on a device and dtype, shared by every mode run on it."""

    def __init__(self, model: str, size: str, batch_size: int, device: str, dtype: str, seed: int = 0):
        self.key = (model, size, batch_size, device, dtype, seed)
        self.device = torch.device(device)
        net, make_input = _models.build_model(model, size, seed)
        self.model: nn.Module = net.to(device=self.device, dtype=DTYPES[dtype])
        self.inputs = _models.make_inputs(make_input, batch_size, self.device, DTYPES[dtype], seed)
        self.params = _models.parameter_count(self.model)
        self.param_bytes = parameter_bytes(self.model)
        self._reference: list[torch.Tensor] | None = None
        self._forward_flops: int | None = None

    def held_tensors(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers(), *self.inputs]

    def forward(self):
        return self.model(*self.inputs)

    def reference_outputs(self) -> list[torch.Tensor]:
        """Outputs under eval_no_grad, the usual inference configuration, for comparing modes."""
        if self._reference is None:
            with apply_mode(self.model, "eval_no_grad") as applied:
                self._reference = [t.detach().clone() for t in output_tensors(applied.run(self.forward))]
        return self._reference

    def forward_flops(self) -> int:
        """Forward arithmetic, counted on the graph-recording path (fused fast-path kernels are opaque to the counter)."""
        if self._forward_flops is None:
            with apply_mode(self.model, "eval") as applied:
                self._forward_flops = count_flops(lambda: applied.run(self.forward))
        return self._forward_flops

    @contextlib.contextmanager
    def parameters_restored(self):
        """Undo an optimizer's updates, so every mode sees the same weights."""
        saved = [p.detach().clone() for p in self.model.parameters()]
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.model.parameters(), saved):
                    p.copy_(s)
                    p.grad = None


def step_function(workload: Workload, applied, step: str) -> Callable[[], None]:
    """The callable that performs one step under an applied mode; what every pass runs."""
    if step == "forward":
        def forward_step():
            with applied.grad_context():
                workload.forward()  # output released at once
        return forward_step
    optimizer = torch.optim.SGD(applied.trainable_parameters(), lr=1e-4)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss_of(workload.forward()).backward()
        optimizer.step()
    return train_step


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def base_record(case: Case, run_id: str | None = None) -> dict:
    """A case's record before anything is measured: identity, provenance, every schema field."""
    record = empty_record(**case.identity())
    record.update(fingerprint())
    record.update(run_id=run_id or new_run_id(), seed=case.seed)
    return record


def measure_case(case: Case, workload: Workload, run_id: str | None = None) -> dict:
    """Measure one validated case on a prepared workload; failures become records, not exceptions."""
    mode = MODES[case.mode]
    record = base_record(case, run_id)
    record.update(params=workload.params, param_bytes=workload.param_bytes, threads=torch.get_num_threads())
    if case.step == "train_step" and not mode.records_graph:
        record.update(status="not_applicable",
                      error=f"mode {mode.name!r} records no autograd graph, so there is no train step")
        return record
    began = time.perf_counter()
    torch.manual_seed(case.seed)
    try:
        record.update(_measure(case, workload, mode))
        record["status"] = "ok"
    except Exception as exc:  # a failing case is a result: record it and let the sweep go on
        record.update(status="oom" if _is_oom(exc) else "error", error=f"{type(exc).__name__}: {exc}".strip())
        if workload.device.type == "cuda":
            torch.cuda.empty_cache()
    record["measure_wall_s"] = time.perf_counter() - began
    return record


def _measure(case: Case, workload: Workload, mode) -> dict:
    out: dict = {}
    reference = workload.reference_outputs()
    restore = workload.parameters_restored() if case.step == "train_step" else contextlib.nullcontext()
    with restore, apply_mode(workload.model, mode) as applied:
        step = step_function(workload, applied, case.step)
        out.update(probe_behaviour(workload.model, lambda: applied.run(workload.forward), reference))
        step()  # warm-up before memory: lazy initialisation is not the step's cost
        out.update(measure_memory(step, workload.device, workload.held_tensors()))
        out["grad_bytes"] = gradient_bytes(workload.model) if case.step == "train_step" else 0
        if case.step == "train_step":
            out["grads_computed"] = sum(1 for p in workload.model.parameters() if p.grad is not None)
            out["flops"] = count_flops(step)
        else:
            out["flops"] = workload.forward_flops()
        timing = time_step(step, workload.device, max_time_s=case.max_time_s)
    out.update(
        time_median_s=timing.median, time_iqr_s=timing.iqr, time_ci_low_s=timing.ci[0],
        time_ci_high_s=timing.ci[1], n_samples=timing.n_samples, samples_s=timing.samples_s,
        steps_per_sample=timing.steps_per_sample, time_converged=timing.converged,
        time_measured_s=timing.measured_s,
    )
    out["flops_per_s"] = out["flops"] / timing.median if out["flops"] and timing.median > 0 else None
    return out


def run_case(
    model: str = "mlp", size: str = "small", batch_size: int = 32, device: str = "cpu",
    dtype: str = "float32", mode: str = "eval_no_grad", step: str = "forward", seed: int = 0,
    max_time_s: float = 2.0, workload: Workload | None = None, run_id: str | None = None,
) -> dict:
    """Measure one case and return its record (a dict with the DESIGN schema fields).

    Bad arguments raise ValueError naming the valid values; a case that fails while running
    returns a record with status error or oom instead.
    """
    case = Case(model, size, batch_size, device, dtype, mode, step, seed, max_time_s).validate()
    if workload is None or workload.key != case.workload_key:
        workload = Workload(*case.workload_key)
    return measure_case(case, workload, run_id)
