"""asv benchmarks: each mode's forward and train-step time, memory and saved bytes.

Params come from gradbench.harness (GRADBENCH_ASV_GRID=quick|default|full). All preparation is in
setup, through gradbench's one pipeline (state, behaviour, warm-up, memory, flops); the timed
methods do nothing but the step. Combinations that cannot run here (cuda without
a GPU, a train step where no graph exists) raise NotImplementedError in setup, which asv reports
as skipped.
"""
from gradbench.harness import BenchmarkCase, grid_from_env

GRID = grid_from_env()
PARAMS = [list(GRID.models), list(GRID.sizes), list(GRID.batch_sizes), list(GRID.devices), list(GRID.modes)]
PARAM_NAMES = ["model", "size", "batch_size", "device", "mode"]


class _Suite:
    params = PARAMS
    param_names = PARAM_NAMES
    step = "forward"
    timeout = 300
    # asv starts a process per parameter combination; one round of 3-10 samples in at most 3 s each
    # keeps the default grid under 15 minutes on a 2-core CPU.
    rounds = 1
    repeat = (3, 10, 3.0)
    warmup_time = 0.2

    def setup(self, model, size, batch_size, device, mode):
        self.case = BenchmarkCase(model, size, batch_size, device, mode, self.step)

    def teardown(self, model, size, batch_size, device, mode):
        if hasattr(self, "case"):  # asv tears down skipped combinations too
            self.case.close()


class Forward(_Suite):
    def time_forward(self, *params):
        self.case.step()


class TrainStep(_Suite):
    step = "train_step"

    def time_train_step(self, *params):
        self.case.step()


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

    def setup(self, model, size, batch_size, device, mode):
        if device != "cuda":
            raise NotImplementedError("max_memory_allocated exists on cuda only")
        super().setup(model, size, batch_size, device, mode)

    def track_cuda_max_memory_allocated(self, *params):
        return self.case.record["cuda_max_allocated_bytes"]

    track_cuda_max_memory_allocated.unit = "bytes"
