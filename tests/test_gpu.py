"""Real CUDA paths, run on a GPU machine (tools/gpu-check runs every test marked gpu); skipped without
a GPU, never faked: their arithmetic is tested on CPU with fakes elsewhere (test_energy, test_memory,
test_timing, test_contention)."""
import json
import subprocess
import sys

import pytest
import torch

from gradbench.cli import main
from gradbench.measure.contention import load_nvml
from gradbench.session import run_case

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BUSY = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda")
(a @ a).sum().item()
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
"""


def _nvml():
    nvml = load_nvml()
    if nvml is None:
        pytest.skip("nvidia-ml-py is not installed or NVML found no driver (pip install nvidia-ml-py)")
    return nvml


def test_energy_per_step_is_read_and_its_average_power_is_physical():
    nvml = _nvml()
    r = run_case("transformer", "small", 64, device="cuda", mode="train", step="train_step", max_time_s=0.2,
                 energy_sampling=True)  # a short cap: the counter, not the cap, sets the window
    assert r["status"] == "ok", r["error"]
    assert r["energy_j"] is not None, r["energy_note"]
    watts = r["energy_j"] / r["time_median_s"]  # per step over time per step: the mean power of the window
    handle = nvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    limit_w = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3
    assert 20 < watts < 1.2 * limit_w, (watts, limit_w, r["energy_note"])
    assert r["samples_per_joule"] == pytest.approx(64 / r["energy_j"])


def test_another_process_computing_on_the_gpu_makes_the_time_untrusted():
    _nvml()
    busy = subprocess.Popen([sys.executable, "-c", BUSY, "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout.readline().strip() == "ready"
        r = run_case("mlp", "small", 256, device="cuda", mode="eval_no_grad", max_time_s=0.3)
    finally:
        busy.kill()
        busy.wait()
    assert r["status"] == "ok", r["error"]
    assert r["gpu_other_processes"] is not None and r["gpu_other_processes"] >= 1, r
    assert r["time_trusted"] is False and "other process(es) computed on the GPU" in r["time_distrust"]


def test_gpus_all_pins_one_worker_per_gpu(tmp_path):
    out = tmp_path / "g.jsonl"
    code = main(["run", "--gpus", "all", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "8",
                 "--modes", "eval_no_grad", "train", "--max-time", "0.05", "--no-report", "--out", str(out)])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["status"] for r in records} <= {"ok", "not_applicable"} and records
    assert {r["gpu_index"] for r in records} == set(range(torch.cuda.device_count()))
