import torch
from torch import nn

from gradbench.measure.memory import SavedTensorsCounter, TensorMemoryTracker, measure_memory

B, IN, HID, OUT = 4, 16, 32, 8
F32 = 4


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, HID), nn.ReLU(), nn.Linear(HID, OUT))


def test_tracker_matches_hand_count_without_graph():
    net, x = _net(), torch.randn(B, IN)
    tracker = TensorMemoryTracker()
    with torch.no_grad(), tracker:
        out = net(x)
    # addmm -> h (B*HID); relu -> r (B*HID) while h is alive: peak 2*B*HID floats.
    # Then h dies and addmm -> out (B*OUT). Weight transposes are views of parameters: 0 bytes.
    assert tracker.peak == 2 * B * HID * F32
    assert tracker.current == (B * HID + B * OUT) * F32  # r and out are alive at the end
    del out


def test_views_of_existing_tensors_allocate_nothing():
    w = torch.randn(64, 64)
    tracker = TensorMemoryTracker()
    with tracker:
        v = w.t()
        v2 = w[:8]
        w.add_(1.0)
    assert tracker.peak == 0
    del v, v2


def test_freed_intermediates_are_not_counted_twice():
    x = torch.randn(1000)
    tracker = TensorMemoryTracker()
    with tracker:
        for _ in range(5):
            y = x * 2  # the previous y dies when rebound
    assert tracker.peak == 2 * 1000 * F32  # the new y is made while the old one is still alive
    del y


def test_saved_bytes_exclude_parameters_and_input():
    net, x = _net(), torch.randn(B, IN)
    counter = SavedTensorsCounter([*net.parameters(), x])
    with counter:
        out = net(x)
    # relu saves its result r; the second addmm saves r too (same storage) and a weight view (excluded).
    assert counter.nbytes == B * HID * F32
    del out


def test_measure_memory_train_step_counts_gradients():
    net, x = _net(), torch.randn(B, IN)
    params = list(net.parameters())

    def step():
        net(x).sum().backward()

    result = measure_memory(step, torch.device("cpu"), [*params, x])
    grads = sum(p.numel() for p in params) * F32
    assert result["peak_bytes"] >= grads
    assert result["saved_bytes"] == B * HID * F32
    assert result["cuda_max_allocated_bytes"] is None


def _allocator_peak(fn):
    """Peak of CPU allocator bytes above the start, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def test_tracker_agrees_with_cpu_allocator_including_transformer_fast_path():
    from gradbench.case import Workload
    from gradbench.modes import apply_mode

    workload = Workload("transformer", "tiny", 8, "cpu", "float32")
    for mode in ("eval_no_grad", "train"):  # fused fast-path kernels, then the graph-recording path
        with apply_mode(workload.model, mode) as applied:
            applied.run(workload.forward)
            tracker = TensorMemoryTracker()
            with tracker:
                applied.run(workload.forward)
            assert tracker.peak == _allocator_peak(lambda: applied.run(workload.forward)), mode
            assert "_transformer_encoder_layer_fwd" in tracker.ops or mode == "train"


def test_outputs_sharing_one_storage_are_counted_once():
    qkv = torch.randn(2, 3, 4 * 3)
    bias = torch.randn(12)
    tracker = TensorMemoryTracker()
    with tracker:
        q, k, v = torch.ops.aten._transform_bias_rescale_qkv(qkv, bias, 2)
    total = sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in (q, k, v)}.values())
    assert tracker.peak == tracker.current == total
