"""Contention: the /proc arithmetic, its limits through a fake /proc, NVML readings with fakes, the verdict."""
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


# ---------------------------------------------------------------- a fake /proc: the limits, exactly


class FakeProc:
    """A /proc folder the test writes (``stat`` per CPU, ``self/task/<tid>/schedstat`` per thread), read by
    the monitor's own readers. Every reading is a later moment: per CPU, ``other_ticks`` more busy ticks
    from other processes and our ``own_s`` more CPU seconds spread over the CPUs, out of ``ticks`` (1 s at
    100 Hz); over the threads, ``ran_ns`` more on a CPU and ``waited_ns`` more runnable but waiting. So a
    window's shares depend neither on how long the code under test took nor on what else this machine runs."""

    def __init__(self, root, cpus=2, other_ticks=0, steal_ticks=0, own_s=0.5, ran_ns=10 ** 9, waited_ns=0,
                 threads=2, ticks=100):
        self.root, self.cpus, self.threads, self.ticks = root, cpus, threads, ticks
        self.other_ticks, self.steal_ticks, self.own_s = other_ticks, steal_ticks, own_s
        self.ran_ns, self.waited_ns = ran_ns, waited_ns
        self.stat_readings = self.sched_readings = self.clock_readings = 0
        (root / "self" / "task").mkdir(parents=True)

    def read_stat(self):
        n = self.stat_readings = self.stat_readings + 1
        own = round(self.own_s / 0.01 / self.cpus)  # our CPU seconds, spread over the CPUs
        busy, steal = n * (self.other_ticks + own), n * self.steal_ticks
        rows = [[busy, 0, 0, n * self.ticks - busy - steal, 0, 0, 0, steal, 0, 0] for _ in range(self.cpus)]
        (self.root / "stat").write_text(
            f"cpu  {' '.join('0' * 10)}\n" + "".join(f"cpu{i} {' '.join(map(str, r))}\n" for i, r in enumerate(rows))
            + "intr 1 2\nctxt 3\n")
        return read_proc_stat(str(self.root / "stat"))

    def read_sched(self):
        n = self.sched_readings = self.sched_readings + 1
        for i in range(self.threads):  # running time split evenly over the threads, all the waiting in one
            task = self.root / "self" / "task" / str(100 + i)
            task.mkdir(exist_ok=True)
            waited = n * self.waited_ns if i == 0 else 0
            (task / "schedstat").write_text(f"{n * self.ran_ns // self.threads} {waited} 7\n")
        return read_own_schedstat(str(self.root / "self" / "task"))

    def own_cpu_s(self):
        self.clock_readings += 1
        return self.clock_readings * self.own_s

    def monitor(self):
        return ContentionMonitor(read_stat=self.read_stat, read_sched=self.read_sched, own_cpu_s=self.own_cpu_s,
                                 cpus=set(range(self.cpus)), tick_s=0.01)


def _window(tmp_path, **proc):
    return FakeProc(tmp_path, **proc).monitor().start().stop()


def _reasons(contention):
    return distrust_reasons(0.01, True, contention)


@pytest.mark.parametrize("other_ticks, share, distrusted", [
    (0, 0.0, False),
    (2, 0.0, False),  # within /proc's slack of 2 ticks per CPU: quiet
    (12, 0.10, False),  # exactly at the limit: not over it
    (13, 0.11, True),
    (52, 0.50, True),
])
def test_other_processes_share_from_proc_stat_and_its_limit(tmp_path, other_ticks, share, distrusted):
    c = _window(tmp_path, other_ticks=other_ticks)
    assert c.cpu_other_share == pytest.approx(share)  # our own 0.5 s (25 ticks a CPU) taken off the busy time
    assert any("other processes used" in r for r in _reasons(c)) is distrusted


@pytest.mark.parametrize("steal_ticks, share, distrusted", [(7, 0.05, False), (8, 0.06, True)])
def test_stolen_share_from_proc_stat_and_its_limit(tmp_path, steal_ticks, share, distrusted):
    c = _window(tmp_path, steal_ticks=steal_ticks)
    assert c.cpu_steal_share == pytest.approx(share) and c.cpu_other_share == 0.0
    assert any("the hypervisor stole" in r for r in _reasons(c)) is distrusted


@pytest.mark.parametrize("waited_ns, share, distrusted", [
    (0, 0.0, False), (10 ** 8, 0.10, False), (11 * 10 ** 7, 0.11, True), (4 * 10 ** 8, 0.40, True),
])
def test_wait_share_summed_over_the_threads_schedstat_and_its_limit(tmp_path, waited_ns, share, distrusted):
    c = _window(tmp_path, waited_ns=waited_ns)
    assert c.cpu_wait_share == pytest.approx(share)
    assert any("waited for a CPU" in r for r in _reasons(c)) is distrusted


def test_a_case_measured_while_proc_shows_other_work_is_untrusted_and_a_quiet_one_is_not(tmp_path):
    from gradbench.case import Case
    from gradbench.session import Session

    case = Case("mlp", "tiny", 8, max_time_s=0.05)
    busy = Session().measure(case, monitor=FakeProc(tmp_path / "busy", other_ticks=52, waited_ns=3 * 10 ** 8).monitor())
    assert busy["status"] == "ok"
    assert busy["cpu_other_share"] == pytest.approx(0.50) and busy["cpu_wait_share"] == pytest.approx(0.30)
    assert busy["time_trusted"] is False
    assert "other processes used 50% of the CPUs" in busy["time_distrust"]
    assert "waited for a CPU 30% of the time they ran" in busy["time_distrust"]
    quiet = Session().measure(case, monitor=FakeProc(tmp_path / "quiet").monitor())
    assert quiet["cpu_other_share"] == 0.0 and quiet["cpu_wait_share"] == 0.0
    assert "other processes" not in (quiet["time_distrust"] or "") and "waited" not in (quiet["time_distrust"] or "")


def test_the_process_clock_and_schedstat_count_every_thread_of_ours():
    """What the monitor subtracts as ours (process_time) and sums as ours (every thread's schedstat) is all
    of this process's threads, not only the calling one: measured on fixed work, so load cannot change it."""
    a = torch.randn(256, 256)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.mm(a, a)  # the second thread exists before the window opens
        sched, own, main = read_own_schedstat(), time.process_time(), time.thread_time()
        for _ in range(100):
            torch.mm(a, a)  # split between both threads
        sched_end, own_end, main_end = read_own_schedstat(), time.process_time(), time.thread_time()
    finally:
        torch.set_num_threads(threads)
    ran_s = (sched_end[0] - sched[0]) / 1e9
    assert own_end - own > 1.3 * (main_end - main)  # the other thread's CPU time is in process_time ...
    assert ran_s == pytest.approx(own_end - own, rel=0.1, abs=0.02)  # ... and in the summed schedstat


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


@pytest.mark.gpu
@needs_nvml
def test_nvml_readings_on_a_real_gpu():
    record = run_case("mlp", "tiny", 8, device="cuda", max_time_s=0.2)
    assert record["status"] == "ok"
    assert record["gpu_sm_clock_mhz"] > 0 and record["gpu_temperature_c"] > 0
    assert isinstance(record["gpu_throttle_reasons"], list)
    assert record["gpu_other_processes"] == 0, record["time_distrust"]


@pytest.mark.gpu
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
