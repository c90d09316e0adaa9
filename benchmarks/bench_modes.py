"""asv benchmarks: each mode's forward and train-step time, memory and saved bytes.

Params come from gradbench.harness (GRADBENCH_GRID=smoke|quick|default|full). All preparation is in
setup, through gradbench's one pipeline (state, behaviour, memory, flops) and its warm-up rule; the
timed methods do nothing but a block of steps, which the suite's timer counts per step. Combinations
that cannot run here (cuda without a GPU, a train step where no graph exists) raise
NotImplementedError in setup, which asv reports as skipped.
"""
import atexit
import math
import time

from gradbench.harness import BenchmarkCase, grid_from_env

try:
    GRID = grid_from_env()
except ValueError as exc:  # a bad GRADBENCH_GRID, GRADBENCH_COMPILE or GRADBENCH_AUTOCAST: one line
    raise SystemExit(f"gradbench: {exc}") from None
PARAMS = [list(GRID.models), list(GRID.sizes), list(GRID.batch_sizes), list(GRID.devices), list(GRID.modes)]
PARAM_NAMES = ["model", "size", "batch_size", "device", "mode"]
if (GRID.compile, GRID.autocast) != (("none",), ("none",)):  # asked for ($GRADBENCH_COMPILE, $GRADBENCH_AUTOCAST):
    PARAMS += [list(GRID.compile), list(GRID.autocast)]    # eager suites keep the parameters of their history
    PARAM_NAMES += ["compile", "autocast"]


_open: list[tuple[tuple, BenchmarkCase]] = []  # the case this process has prepared, with its key


def _prepared(key: tuple) -> BenchmarkCase:
    """The prepared, warm case for ``key`` (model, size, batch, device, mode, step[, compile, autocast]).

    asv_runner >= 0.3 re-runs teardown and setup before every sample (asv#966), for benchmarks that
    consume what setup made. A step consumes nothing, and preparing a case again costs 0.1-0.5 s, so
    a re-run reuses it. Another case closes the previous one first: they share the workload's model.
    """
    if _open and _open[0][0] == key:
        return _open[0][1]
    _close_open()
    base, axes = key[:6], dict(zip(("compile", "autocast"), key[6:]))
    case = BenchmarkCase(*base, **axes) if axes else BenchmarkCase(*base)
    if not hasattr(case, "block"):  # gradbench 0.2.0-0.3.0, installed by asv from an older commit
        case = _OlderCase(case)
    _open.append((key, case))
    return case


@atexit.register
def _close_open() -> None:
    """Close the prepared case; at exit too, before the interpreter tears down what closing needs."""
    while _open:
        _open.pop()[1].close()


class _OlderCase:
    """The BenchmarkCase of gradbench 0.2.0 to 0.3.0, warmed and sampled as today's is.

    asv runs this suite, from the working tree, against gradbench as installed from each commit it
    measures. Those versions' cases neither warm nor time blocks: this does both with the rule of
    gradbench.measure.timing (at least one step, then more until 0.15 s; a block of >= 1 ms),
    through their synchronised ``step()``. (Before 0.2.0 there is no BenchmarkCase: asv reports
    the suite's import as failed on those commits.)
    """

    WARMUP_S, MIN_BLOCK_S = 0.15, 1e-3

    def __init__(self, case):
        self.case, self.record = case, case.record
        began, fastest = time.perf_counter(), math.inf
        while fastest == math.inf or time.perf_counter() - began < self.WARMUP_S:
            started = time.perf_counter()
            case.step()
            fastest = min(fastest, time.perf_counter() - started)
        self.steps_per_block = max(1, math.ceil(self.MIN_BLOCK_S / max(fastest, 1e-9)))

    def block(self) -> None:
        for _ in range(self.steps_per_block):
            self.case.step()

    def close(self) -> None:
        self.case.close()


class _Suite:
    params = PARAMS
    param_names = PARAM_NAMES
    step = "forward"
    timeout = 300
    # asv starts a process per parameter combination. One round of 5 to 100 samples in about 2 s: enough
    # samples for the median's interval to be judged (10 samples' 95% interval runs from the smallest
    # to the largest). Setup warms the step by gradbench's rule (harness.BenchmarkCase), so each
    # sample, and a --quick run's only one, times a warm step; asv's own warm-up is off.
    rounds = 1
    repeat = (5, 100, 2.0)
    warmup_time = 0

    def setup(self, *params):
        # no teardown: the case stays prepared for asv's next sample, and the next case closes it
        named = dict(zip(PARAM_NAMES, params))
        key = tuple(named[k] for k in ("model", "size", "batch_size", "device", "mode"))
        self.case = _prepared((*key, self.step, *params[len(key):]))

    def timer(self) -> float:
        """asv's clock, per step. A timed call is a block of steps (gradbench's sample, >= 1 ms): one call
        of a 0.1 ms step would be mostly timer and scheduler noise. Read at each sample's start and end,
        so a block size that a re-run setup changed is divided by correctly."""
        return time.perf_counter() / self.case.steps_per_block


class Forward(_Suite):
    def time_forward(self, *params):
        self.case.block()


class TrainStep(_Suite):
    step = "train_step"

    def time_train_step(self, *params):
        self.case.block()


class ForwardMemory(_Suite):
    """Memory of one forward (bytes), from the pipeline's memory pass in setup: the record's fields."""

    def track_peak_bytes(self, *params):
        return self.case.record["peak_bytes"]

    track_peak_bytes.unit = "bytes"

    def track_saved_bytes(self, *params):
        return self.case.record["saved_bytes"]

    track_saved_bytes.unit = "bytes"


class CudaMemory(_Suite):
    """The CUDA allocator's own peak: there is none to ask on cpu, so those combinations are skipped."""

    def setup(self, *params):
        if dict(zip(PARAM_NAMES, params))["device"] != "cuda":
            raise NotImplementedError("max_memory_allocated exists on cuda only")
        super().setup(*params)

    def track_cuda_max_memory_allocated(self, *params):
        return self.case.record["cuda_max_allocated_bytes"]

    track_cuda_max_memory_allocated.unit = "bytes"
