"""Contention: the /proc arithmetic and NVML readings with fakes, the verdict, and real busy processes."""
import subprocess
import sys
import time

import pytest
import torch

from gradbench.measure.contention import (
    Contention, ContentionMonitor, GpuProbe, cpu_shares, cpu_ticks, read_own_schedstat, read_proc_stat,
)
from gradbench.measure.trust import distrust_reasons, verdict_fields
from gradbench.session import run_case
from fake_nvml import FakeNvml


def stat_row(user=0, nice=0, system=0, idle=0, iowait=0, irq=0, softirq=0, steal=0, guest=0):
    return [user, nice, system, idle, iowait, irq, softirq, steal, guest, 0]


def test_other_share_is_machine_busy_time_minus_our_own_cpu_time():
    # 2 CPUs, 100 ticks each (1 s at 100 Hz): 120 ticks busy, of which this process used 0.6 s = 60 ticks
    start = cpu_ticks({0: stat_row(), 1: stat_row()}, {0, 1}, own_cpu_s=0.0)
    end = cpu_ticks({0: stat_row(user=80, idle=20), 1: stat_row(user=30, system=10, idle=60)}, {0, 1}, own_cpu_s=0.6)
    other, steal = cpu_shares(start, end, tick_s=0.01, cpus=2)
    assert other == pytest.approx((120 - 60 - 4) / 200)  # 4 ticks of slack (2 per CPU) go to the quiet side
    assert steal == 0.0


def test_steal_share_and_cpus_outside_our_affinity_ignored():
    start = cpu_ticks({0: stat_row(), 1: stat_row(), 2: stat_row()}, {0, 1}, 0.0)
    end = cpu_ticks({0: stat_row(user=50, steal=50), 1: stat_row(user=50, steal=50), 2: stat_row(user=100)},
                    {0, 1}, own_cpu_s=1.0)
    other, steal = cpu_shares(start, end, tick_s=0.01, cpus=2)
    assert other == 0.0  # CPU 2's work is not on our CPUs; our own 100 ticks are ours
    assert steal == pytest.approx((100 - 4) / 200)


def test_unknown_when_proc_is_unreadable(tmp_path):
    assert read_proc_stat(str(tmp_path / "missing")) == {}
    assert cpu_shares(None, None, 0.01, 2) == (None, None)
    monitor = ContentionMonitor(read_stat=lambda: {}, cpus={0})
    assert monitor.start().stop().cpu_other_share is None


def test_read_proc_stat_parses_per_cpu_lines(tmp_path):
    path = tmp_path / "stat"
    path.write_text("cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\ncpu1 10 0 0 5 0 0 0 0 0 0\nintr 1 2\n")
    assert read_proc_stat(str(path)) == {0: [1, 2, 3, 4, 5, 6, 7, 8, 0, 0], 1: [10, 0, 0, 5, 0, 0, 0, 0, 0, 0]}


def test_monitor_with_fake_readers():
    readings = iter([{0: stat_row()}, {0: stat_row(user=90, idle=10)}])
    own = iter([0.0, 0.2])
    monitor = ContentionMonitor(read_stat=lambda: next(readings), own_cpu_s=lambda: next(own), cpus={0},
                                tick_s=0.01)
    c = monitor.start().stop()
    assert c.cpu_other_share == pytest.approx((90 - 20 - 2) / 100)
    assert verdict_fields(0.01, True, c)["time_trusted"] is False


def test_wait_share_is_run_queue_delay_per_running_time():
    sched = iter([(1_000_000_000, 5_000_000), (1_500_000_000, 205_000_000)])  # ran 0.5 s, waited 0.2 s more
    monitor = ContentionMonitor(read_stat=lambda: {}, read_sched=lambda: next(sched), cpus={0})
    c = monitor.start().stop()
    assert c.cpu_wait_share == pytest.approx(0.4)
    assert "waited for a CPU 40%" in verdict_fields(0.01, True, c)["time_distrust"]


def test_read_own_schedstat_sums_this_process_threads(tmp_path):
    for tid, text in (("1", "700 40 9\n"), ("2", "300 2 1\n"), ("3", "bad\n")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "schedstat").write_text(text)
    (tmp_path / "4").mkdir()  # a thread that ended between the listing and the read: no schedstat
    assert read_own_schedstat(str(tmp_path)) == (1000, 42)
    assert read_own_schedstat(str(tmp_path / "gone")) is None
    with open("/proc/thread-self/schedstat") as f:  # the real /proc: this thread's own, read first
        main_ran, main_waited = map(int, f.read().split()[:2])
    ran, waited = read_own_schedstat()
    assert ran >= main_ran and waited >= main_waited  # the sum over every thread, this one included


def test_gpu_probe_counts_other_processes_and_names_throttle_reasons():
    import os

    probe = GpuProbe("cuda:0", FakeNvml([os.getpid(), 4242], bits=0x4 | 0x40), handle="h")
    assert probe.read() == dict(gpu_other_processes=1, gpu_sm_clock_mhz=1980, gpu_temperature_c=61,
                                gpu_throttle_reasons=["sw_power_cap", "hw_thermal_slowdown"])
    # in a container NVML reports host pids: ours is not among them, one of them is taken as ours
    assert GpuProbe("cuda:0", FakeNvml([17, 18], bits=0), handle="h").read()["gpu_other_processes"] == 1
    assert GpuProbe("cuda:0", FakeNvml([17], bits=0), handle="h").read()["gpu_other_processes"] == 0


def test_gpu_readings_reach_the_verdict():
    ok = Contention(cpu_other_share=0.0, cpu_steal_share=0.0, gpu_other_processes=0,
                    gpu_throttle_reasons=["sw_power_cap"])
    assert distrust_reasons(0.01, True, ok) == []  # a power cap under load is the GPU working as designed
    hot = Contention(gpu_other_processes=2, gpu_throttle_reasons=["hw_thermal_slowdown"])
    reasons = distrust_reasons(0.01, True, hot)
    assert any("2 other process" in r for r in reasons) and any("hw_thermal_slowdown" in r for r in reasons)


def test_verdict_names_each_reason_and_is_trusted_only_without_any():
    assert verdict_fields(0.05, False, Contention(0.02, 0.0)) == dict(time_trusted=True, time_distrust=None)
    v = verdict_fields(0.3, False, Contention(0.4, 0.08))
    assert v["time_trusted"] is False
    assert "+-30%" in v["time_distrust"] and "40%" in v["time_distrust"] and "stole 8%" in v["time_distrust"]
    assert verdict_fields(0.3, True, None)["time_trusted"] is True  # converged: precise by definition


# ---------------------------------------------------------------- real processes


def _busy(n):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def test_our_own_threads_are_not_counted_as_other_processes():
    a = torch.randn(256, 256)
    cpus = __import__("os").sched_getaffinity(0)
    before, own_before = cpu_ticks(read_proc_stat(), cpus, 0.0), time.process_time()
    monitor = ContentionMonitor().start()
    began = time.perf_counter()
    while time.perf_counter() - began < 0.5:
        torch.mm(a, a)  # every torch thread of this process busy
    c = monitor.stop()
    after, own_after = cpu_ticks(read_proc_stat(), cpus, 0.0), time.process_time()
    capacity = after.total - before.total
    busy_share = (after.busy - before.busy) / capacity
    own_share = (own_after - own_before) / ContentionMonitor().tick_s / capacity
    assert own_share > 0.3  # process_time counts every thread of ours ...
    # ... and the monitor takes it off the machine's busy time, whatever else runs on this machine now
    assert c.cpu_other_share is not None and c.cpu_other_share <= max(0.0, busy_share - own_share) + 0.05


def test_one_busy_process_is_seen_in_a_short_window_by_our_threads_waiting():
    a = torch.randn(256, 256)
    procs = _busy(1)
    try:
        time.sleep(0.3)
        monitor = ContentionMonitor().start()
        began = time.perf_counter()
        while time.perf_counter() - began < 0.1:  # too short for /proc/stat's ticks to judge
            torch.mm(a, a)
        c = monitor.stop()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if torch.get_num_threads() < len(__import__("os").sched_getaffinity(0)):
        pytest.skip("fewer torch threads than CPUs: a single busy process need not delay them")
    assert c.cpu_wait_share > 0.10


def test_busy_processes_make_a_measured_case_untrusted():
    procs = _busy(len(__import__("os").sched_getaffinity(0)))  # one per CPU: half the machine, whatever its size
    try:
        time.sleep(0.3)
        record = run_case("mlp", "tiny", 8, max_time_s=0.2)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert record["status"] == "ok"
    assert record["cpu_other_share"] > 0.10
    assert record["time_trusted"] is False and "other processes used" in record["time_distrust"]


# ---------------------------------------------------------------- a real GPU (skipped without one)

needs_nvml = pytest.mark.skipif(
    not torch.cuda.is_available() or __import__("importlib").util.find_spec("pynvml") is None,
    reason="needs a CUDA GPU and nvidia-ml-py")

GPU_HOG = """
import sys, time, torch
a = torch.randn(4096, 4096, device="cuda")
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    a @ a
torch.cuda.synchronize()
"""


@needs_nvml
def test_nvml_readings_on_a_real_gpu():
    record = run_case("mlp", "tiny", 8, device="cuda", max_time_s=0.2)
    assert record["status"] == "ok"
    assert record["gpu_sm_clock_mhz"] > 0 and record["gpu_temperature_c"] > 0
    assert isinstance(record["gpu_throttle_reasons"], list)
    assert record["gpu_other_processes"] == 0, record["time_distrust"]


@needs_nvml
def test_another_process_on_the_gpu_makes_a_case_untrusted():
    hog = subprocess.Popen([sys.executable, "-c", GPU_HOG, "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout.readline().strip() == "ready"
        record = run_case("mlp", "tiny", 8, device="cuda", max_time_s=0.2)
    finally:
        hog.kill()
        hog.wait()
    assert record["gpu_other_processes"] >= 1
    assert record["time_trusted"] is False and "computed on the GPU" in record["time_distrust"]
