"""A Case: what to run, validated, with one-line errors naming the valid values.

pipeline.py turns a Case into a record; workload.py builds what it runs on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import models as _models
from .compiled import validate_setting
from .modes import get_mode
from .record import short_repr
from .workload import DTYPES

DEVICES = ("cpu", "cuda")
# Case.workload_key's fields, in Workload's argument order
WORKLOAD_KEY_FIELDS = ("model", "size", "batch_size", "device", "dtype", "seed", "seq_len", "image_size")
STEPS = ("forward", "train_step")


def validate_device(device: str, here: bool = True) -> None:
    """``here``: the device must exist on this machine (not so for a Slurm submitter: the nodes measure)."""
    kind, colon, index = str(device).partition(":")
    digits = index.isascii() and index.isdigit()  # not '\u00b2', which isdigit() calls a digit and int() refuses
    if kind not in DEVICES or (colon and not digits) or (kind == "cpu" and colon):
        raise ValueError(f"unknown device {short_repr(device)}; valid devices: {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and here:
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


MAX_BATCH_SIZE = 2 ** 63 - 1  # a record's int64; a batch that large fails as a result, not as a crash


def validate_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"bad batch size {batch_size!r}; batch sizes are integers from 1 to 2^63 - 1")


MAX_INPUT_AXIS = 2 ** 31  # a sequence length or image size beyond this is a typo, not a workload


def validate_input_axis(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INPUT_AXIS:
        raise ValueError(f"bad {name} {short_repr(value)}; it is an integer from 1 to 2^31")


def validate_inputs(model: str, seq_len, image_size) -> None:
    """The axes the model takes, and no other: a family its own (Family.inputs); a user model seq_len only."""
    validate_input_axis("seq_len", seq_len)
    validate_input_axis("image_size", image_size)
    takes = ("seq_len",) if _models.is_user_model(model) else \
        tuple(f.inputs for f in [_models.FAMILIES.get(model)] if f is not None and f.inputs)
    for name, value in (("seq_len", seq_len), ("image_size", image_size)):
        if value is not None and name not in takes:
            who = "a user model" if _models.is_user_model(model) else f"model {model!r}"
            families = ", ".join(f.name for f in _models.FAMILIES.values() if f.inputs == name)
            raise ValueError(f"{who} takes no {name} ({families} do); leave --{name.replace('_', '-')} out for it")


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
    cudnn_benchmark: bool = False
    compile: str = "none"
    autocast: str = "none"
    compile_cold: bool = False
    energy_sampling: bool = False  # CUDA: sample on until the energy counter has updated 10 times
    head: str | None = None  # finetune_head's module (--head); None: the last nn.Linear the output depends on
    memory_budget: int | None = None  # bytes a case may use (--memory-budget; fit.py); None: what the device has
    seq_len: int | None = None  # a family that takes one: its default when None (see __post_init__)
    image_size: int | None = None

    def __post_init__(self):
        """A family that takes an input axis runs at its default when none is given, and says so in its identity."""
        family = _models.FAMILIES.get(self.model) if isinstance(self.model, str) else None
        if family is not None and family.inputs and getattr(self, family.inputs) is None:
            object.__setattr__(self, family.inputs, family.default_input)

    def validate(self, here: bool = True) -> "Case":
        """Raise ValueError naming the bad value and the valid ones. ``here``: its device exists here."""
        _models.validate_model_name(self.model)
        _models.validate_size(self.model, self.size)
        validate_batch_size(self.batch_size)
        validate_inputs(self.model, self.seq_len, self.image_size)
        validate_device(self.device, here)
        validate_dtype(self.dtype, self.device)
        get_mode(self.mode)
        validate_step(self.step)
        validate_setting("compile", self.compile, self.device)
        validate_setting("autocast", self.autocast, self.device)
        for name in ("cudnn_benchmark", "compile_cold", "energy_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"bad {name} {getattr(self, name)!r}; it is true or false")
        if self.head is not None and (not isinstance(self.head, str) or not self.head.strip()):
            raise ValueError(f"bad head {self.head!r}; name a module of the model (model.named_modules())")
        if self.memory_budget is not None and (isinstance(self.memory_budget, bool) or not isinstance(
                self.memory_budget, int) or not 1 <= self.memory_budget < 2 ** 63):
            raise ValueError(f"bad memory budget {self.memory_budget!r}; it is a number of bytes from 1 to 2^63 - 1")
        if isinstance(self.max_time_s, bool) or not isinstance(self.max_time_s, (int, float)) \
                or not 0 < self.max_time_s < float("inf"):
            raise ValueError(f"bad max time {self.max_time_s!r}; it must be a finite number of seconds > 0")
        return self

    @property
    def workload_key(self) -> tuple:
        """Workload's arguments, in its order (WORKLOAD_KEY_FIELDS)."""
        return tuple(getattr(self, k) for k in WORKLOAD_KEY_FIELDS)

    @property
    def group_key(self) -> tuple:
        """What a group of modes shares: the workload, and under compile one compiled model."""
        return (*self.workload_key, self.compile, self.autocast)

    def identity(self) -> dict:
        """The record's identity fields (settings such as seed and cudnn_benchmark are recorded apart)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("seed", "max_time_s", "cudnn_benchmark", "compile_cold", "energy_sampling", "head",
                             "memory_budget")}
