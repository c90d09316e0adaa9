"""Memory predicted without allocating: a case's step run on fake tensors (torch's FakeTensorMode: shapes,
dtypes and devices, no storage), through the pipeline's own passes (pipeline.prepare with the memory
backend below), so that the mode's switches, the settled baseline, the step and its optimizer are the
ones a measurement runs. The storages the step creates are followed in the order they are made and
freed (measure/tensors.TensorMemoryTracker, by weak reference), which gives held, peak and saved bytes.

Memory a CPU kernel allocates for itself below the dispatcher (oneDNN's convolution and RNN buffers), and
outputs a fake kernel gets wrong, are probed: the kernel run for real on zeros (measure/kernel_probes.py).
What it cannot see, and the measurement can: cuBLAS and cuDNN workspaces on CUDA, and the caching
allocator's whole blocks (a request served from a larger free block it does not split counts the whole
block, up to 1 MiB more; measure/memory.py). Where the fake tensors cannot follow the model (a value read
in forward, a data-dependent shape, an operator without a fake kernel), the case is ``unpredictable`` with
one line saying why, never a number.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from .case import Case
from .compiled import autocast_entry
from .measure.eager_autocast import run_as_eager
from .measure.memory import Peak
from .measure.kernel_probes import CpuKernels
from .measure.small_values import with_values
from .measure.tensors import TensorMemoryTracker, _storage_key, _tensor_args

CUDA_MIN_BLOCK = 512  # the caching allocator rounds every request up to a multiple of 512 bytes (kMinBlockSize)
SOURCE = "predicted (fake tensors, allocations replayed)"
SOURCE_CPU_KERNELS = "predicted (fake tensors on the CPU's kernels, CUDA rounding: no CUDA here)"


def cuda_block_bytes(nbytes: int) -> int:
    """What max_memory_allocated counts for one request of ``nbytes``: rounded up to 512 bytes."""
    return max(CUDA_MIN_BLOCK, -(-nbytes // CUDA_MIN_BLOCK) * CUDA_MIN_BLOCK)


class Unpredictable(Exception):
    """The fake tensors cannot follow this case's step: one line, the case falls back to measurement."""


class ReplayedPeak:
    """A memory backend for pipeline.prepare, as measure/memory.py's: the step primed, settled, then the
    second step's peak above that baseline, from the storages it creates and frees. ``prime`` False: the
    workload has run a step of this kind already (what priming is for, lazy initialisation, is done; on fake
    tensors a step costs seconds for a large model)."""

    source = SOURCE

    def __init__(self, device: torch.device, prime: bool = True, autocast=None):
        self.block_bytes = cuda_block_bytes if device.type == "cuda" else None
        self.for_cpu = device.type == "cpu"  # a CUDA case run on CPU kernels: oneDNN's buffers are not CUDA's
        self.prime = prime
        self.autocast = autocast  # the step's autocast scope, for the tracker

    def measure(self, step, settle) -> Peak:
        settle()
        if self.prime:
            step()
            settle()
        tracker = TensorMemoryTracker(self.block_bytes, cpu_kernels=CpuKernels() if self.for_cpu else None,
                                      autocast=self.autocast, with_values=with_values)
        with tracker, _linear_bias_in_place(), _lstm_biases_added_in_place(tracker), \
                (_rng_states_counted(tracker) if self.for_cpu else contextlib.nullcontext()):
            step()
        return Peak(tracker.peak, self.source)


class _SmallValues(TorchDispatchMode):
    """Integer and boolean tensors made while a workload is built (token ids, an attention mask of ones, position
    buffers) computed for real on the CPU, as during the step (small_values.with_values): code that branches on
    their values (transformers: is the mask all ones) then takes eager's branch. With the step's ``autocast``
    entered again inside what it runs where eager has it on (eager_autocast.run_as_eager): a step primed here,
    without the tracker, under inference mode and autocast failed in an einsum of a bfloat16 activation with a
    float32 weight, which eager runs."""

    def __init__(self, autocast=None):
        super().__init__()
        self.autocast = autocast

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = _tensor_args(args)
        out = with_values(func, args, kwargs, tensors, any(isinstance(t, FakeTensor) for t in tensors))
        return run_as_eager(self.autocast, func, args, kwargs) if out is NotImplemented else out


@contextlib.contextmanager
def _rng_states_counted(tracker: TensorMemoryTracker):
    """The CPU generator's state, a real tensor of 5,056 bytes that torch.utils.checkpoint takes per block in the
    forward (and keeps to its recomputation), counted in the step's memory: it is made outside the dispatcher,
    where the tracker does not see it, and the CPU's allocator counts it."""
    original = torch.get_rng_state
    torch.get_rng_state = lambda: tracker.adopt(original())
    try:
        yield
    finally:
        torch.get_rng_state = original


@contextlib.contextmanager
def _linear_bias_in_place():
    """F.linear on an input that is not contiguous (a transpose) as eager runs it: ATen's linear then multiplies
    and adds the bias in place, but out of place where the bias is a tensor subclass, as a fake tensor is, which
    holds one more output for a moment (a Linear after a transpose, in train mode: 1.33 times the measured
    peak). F.linear is replaced for the step, as torch.get_rng_state is (a function mode would turn the
    transformer fast path off: it refuses while any is active); calls from C++ (nn.LSTM's projections) are
    not seen."""
    functional = torch.nn.functional
    original = functional.linear
    casts: dict = {}  # as autocast's cache, for the step: a leaf's cast, where it requires grad

    def linear(input, weight, bias=None):
        if isinstance(bias, FakeTensor) and input.dim() >= 3 and not input.is_contiguous():
            out = original(input, weight)
            if bias.dtype != out.dtype:  # under autocast, linear's autocast kernel casts the bias too (cached)
                cached = bias.is_leaf and bias.requires_grad and not torch.is_inference_mode_enabled()
                cast = casts.get(id(bias)) if cached else None
                if cast is None:
                    cast = bias.to(out.dtype)
                    if cached:
                        casts[id(bias)] = cast
                bias = cast
            return out.add_(bias)
        return original(input, weight, bias)

    functional.linear = linear
    try:
        yield
    finally:
        functional.linear = original


@contextlib.contextmanager
def _lstm_biases_added_in_place(tracker: TensorMemoryTracker):
    """nn.LSTM's C++ layers (with ``proj_size``, which oneDNN's layer does not take) project a whole sequence
    through ATen's linear, which adds the bias in place in eager and out of place onto a fake tensor (see
    _linear_bias_in_place): grad-free forwards were predicted 1.50-1.67. While torch._VF.lstm runs, the
    tracker adds its biases (its flat weights of one dimension) in place."""
    vf = torch._VF
    original, own = vf.lstm, vars(vf).get("lstm")  # own: one set on the module already (by whom, we keep)

    def lstm(*args, **kwargs):
        biases = {_storage_key(t) for a in args if isinstance(a, (list, tuple)) for t in a
                  if isinstance(t, FakeTensor) and t.dim() == 1}
        before = set(tracker.biases_added_in_place)
        tracker.biases_added_in_place |= biases
        try:
            return original(*args, **kwargs)
        finally:
            tracker.biases_added_in_place = before

    vf.lstm = lstm
    try:
        yield
    finally:
        if own is None:
            del vf.lstm  # the module's own attribute lookup again
        else:
            vf.lstm = own


def kernels_device(device: str) -> str:
    """The device whose kernels the fake step runs: the case's own, or the CPU's for a CUDA case where torch has
    no CUDA (a CPU build: there a fake CUDA tensor reaches C++ kernels whose device guard aborts the process)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"
    return "cuda:0" if device == "cuda" else device


class Predictor:
    """Predictions for many cases: each workload (model, size, batch, dtype, input) is built once on fake
    tensors, under its own FakeTensorMode, and shared by the modes and steps predicted on it, as a sweep
    shares a built workload."""

    def __init__(self, run_id: str | None = None):
        self.run_id = run_id
        self._workloads: dict[tuple, tuple] = {}  # workload key -> (fake mode, workload or the failure)
        self._primed: set[tuple] = set()  # (workload key, step) run once already

    def _workload(self, runs: Case):
        from torch._subclasses.fake_tensor import FakeTensorMode

        from . import state
        from .workload import Workload

        key = runs.workload_key
        if key not in self._workloads:
            fake = FakeTensorMode(allow_non_fake_inputs=True)
            try:
                with _model_code(), fake, _SmallValues(), state.modes_kept(), _initialisers_without_values():
                    self._workloads[key] = (fake, Workload(*key))
            except Exception as exc:  # noqa: BLE001 - every case of the workload says why
                self._workloads[key] = (fake, exc)
        return self._workloads[key]

    def forget(self, case: Case) -> None:
        """Drop the case's fake workload (a search over batch sizes builds one per batch)."""
        key = replace(case, device=kernels_device(case.device)).workload_key
        self._workloads.pop(key, None)
        self._primed -= {k for k in self._primed if k[0] == key}

    def predict(self, case: Case) -> dict:
        """The case's record of kind ``prediction``: held, peak, saved and gradient bytes as the measurement
        would find them, with no allocation; status ``unpredictable`` (and why) where fake tensors cannot
        follow the step, ``not_applicable`` where the mode does not apply, ``error`` where the model cannot be
        built.

        A CUDA case where torch has no CUDA runs the CPU's kernels, with the CUDA allocator's rounding: where
        the two devices' kernels save different tensors (dropout's mask: 1 byte an element on CUDA, 4 on CPU;
        the attention kernel SDPA picks), the prediction follows the CPU's, and ``peak_bytes_source`` says
        so."""
        target = torch.device(case.device)
        runs = replace(case, device=kernels_device(case.device))
        refused = _not_followed(case, runs)
        if refused:
            record = dict(_base(case, self.run_id), status="unpredictable", error=refused)
            return _as_case(record, case)
        with warnings.catch_warnings():  # torch's own code asks a fake tensor for its data pointer, and warns
            warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")
            return self._predicted(case, runs, target)

    def _predicted(self, case: Case, runs: Case, target: torch.device) -> dict:
        from . import pipeline, state
        from .session import _case_failure, failed, not_applicable

        source = SOURCE if runs.device != "cpu" or target.type == "cpu" else SOURCE_CPU_KERNELS
        record: dict = _base(case, self.run_id)
        fake, workload = self._workload(runs)
        if isinstance(workload, BaseException):
            limit = _fake_limit_in(workload)
            if limit is not None:  # the model's builder wraps what it raised (models.py)
                return _as_case(record, case, status="unpredictable", error=_why_unpredictable(limit))
            return _as_case(record, case, **dict(zip(("status", "error"), failed(workload))))
        try:
            with _model_code(), fake, _SmallValues(autocast_entry(torch.device(runs.device), runs.autocast)), \
                    state.modes_kept():
                record.update(pipeline.base_record(runs, workload, self.run_id), kind="prediction", source="predict")
                reason = not_applicable(runs, workload.model)
                if reason:
                    return _as_case(record, case, status="not_applicable", error=reason)
                primed = (runs.workload_key, runs.step) in self._primed
                with pipeline.prepare(runs, workload, record, memory=ReplayedPeak(
                        target, prime=not primed, autocast=autocast_entry(torch.device(runs.device), runs.autocast)),
                                      probes=False):
                    pass
                self._primed.add((runs.workload_key, runs.step))
        except Exception as exc:  # noqa: BLE001 - a case that fails is a result, as in a sweep
            limit = _fake_limit_in(exc)  # a limit of fake tensors, raised or wrapped
            if limit is not None:
                return _as_case(record, case, status="unpredictable", error=_why_unpredictable(limit))
            return _as_case(record, case, **dict(zip(("status", "error"), _case_failure(exc, record))))
        return _as_case(record, case, status="ok", peak_bytes_source=source, tracked_peak_bytes=None)


def predict(case: Case, run_id: str | None = None) -> dict:
    """One case's prediction (Predictor.predict)."""
    return Predictor(run_id).predict(case)


@contextlib.contextmanager
def _model_code():
    """Around the model's code: its sys.exit() or KeyboardInterrupt is the case's error, as in a measurement;
    the user's Ctrl-C or SIGTERM still stops the command."""
    from .interrupts import InterruptWatch, raised_by_model
    from .session import StoppedByModel

    interrupts = InterruptWatch()
    try:
        with interrupts:
            yield
    except (KeyboardInterrupt, SystemExit) as exc:
        if interrupts.by_signal(exc):
            raise
        raise StoppedByModel(raised_by_model(exc)) from None


@contextlib.contextmanager
def _initialisers_without_values():
    """While a model is built on fake tensors: torch.nn.init.trunc_normal_ reads a value on the way (a fake tensor
    has none), so on a fake tensor it draws normal_ instead, the same shape and dtype: weights' values change no
    byte of memory."""
    original = torch.nn.init.trunc_normal_

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
        from torch._subclasses.fake_tensor import FakeTensor

        if isinstance(tensor, FakeTensor):
            with torch.no_grad():
                return tensor.normal_(mean, std)
        return original(tensor, mean, std, a, b, generator)

    torch.nn.init.trunc_normal_ = trunc_normal_
    try:
        yield
    finally:
        torch.nn.init.trunc_normal_ = original


def _base(case: Case, run_id: str | None) -> dict:
    from . import pipeline

    return dict(pipeline.base_record(case, run_id=run_id), kind="prediction", source="predict")


def _not_followed(case: Case, runs: Case) -> str | None:
    """Settings a prediction cannot follow, said before anything is built."""
    if case.compile != "none":
        return (f"--compile {case.compile}: the compiled kernels allocate outside the dispatcher, where fake "
                "tensors cannot follow them")
    if case.autocast != "none" and runs.device != case.device:
        return (f"--autocast {case.autocast} on {case.device} with no CUDA here: CPU autocast casts other "
                "operators than CUDA's")
    return None


def _fake_only(exc: BaseException) -> bool:
    """An error only fake tensors raise (a missing meta kernel, a data pointer or storage read; a module moved to
    another memory format, whose parameters torch cannot swap for fake ones): the model is not broken, the
    prediction cannot follow it."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(w in text for w in ("FakeTensor", "fake tensor", "meta tensor",
                                                                      "device='meta'", "meta device",
                                                                      "Couldn't swap"))


def _fake_limit_in(exc: BaseException) -> BaseException | None:
    """The error in ``exc`` or what caused it (a model's builder wraps it) that fake tensors alone raise, if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, _FAKE_LIMITS) or _fake_only(exc):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _as_case(record: dict, case: Case, **fields) -> dict:
    """The record named as the case asked (a CUDA case run on CPU kernels is still the CUDA case)."""
    return {**record, **case.identity(), **fields}


def _fake_limits() -> tuple[type[BaseException], ...]:
    from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException,
                                               UnsupportedFakeTensorException, UnsupportedOperatorException)

    from .measure.tensors import NotFollowed

    return (DataDependentOutputException, DynamicOutputShapeException, UnsupportedFakeTensorException,
            UnsupportedOperatorException, NotImplementedError, NotFollowed)


_FAKE_LIMITS = _fake_limits()


def _why_unpredictable(exc: BaseException) -> str:
    from .measure.tensors import NotFollowed
    from .text import first_line

    first = first_line(exc)
    if isinstance(exc, NotFollowed):
        return f"fake tensors cannot follow this step: {first}"
    if "Couldn't swap" in str(exc):
        return (f"fake tensors cannot follow this model ({type(exc).__name__}: {first}): a module moved to another "
                "memory format (.to(memory_format=...)) cannot be built on fake tensors")
    return (f"fake tensors cannot follow this step ({type(exc).__name__}: {first}): a value read in forward, a "
            "data-dependent shape or an operator without a fake kernel")

