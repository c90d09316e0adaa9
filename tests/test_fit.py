"""The fit check: a built-in model's case whose lower bound of memory is above what its device holds (fake
/proc/meminfo, fake cgroup files, fake CUDA figures) or above --memory-budget is not_applicable before its
workload is built, with the figures; the bound's parts, exactly."""
import json

import pytest
import torch

from gradbench import fit
from gradbench.case import Case
from gradbench.catalog import weights
from gradbench.cli import main
from gradbench.models import build_model, parameter_count
from gradbench.session import Session

# mlp tiny: 102,250 float32 parameters (409,000 B), BatchNorm buffers (4 blocks x (2 x 144 float32 + 1 int64):
# 4,640 B) and an input of 256 float32 features a sample
MLP_TINY_WEIGHTS, MLP_TINY_BUFFERS, MLP_IN_BYTES = 409_000, 4 * (2 * 144 * 4 + 8), 256 * 4


def meminfo(tmp_path, available_kb: int):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   {available_kb} kB\n"
                    "Buffers:          100 kB\n")
    return str(path)


def cpu_readers(tmp_path, available_kb: int, proc_cgroup: str = "/nonexistent", root: str = "/nonexistent"):
    return fit.Readers(cpu=lambda: fit.cpu_room(meminfo(tmp_path, available_kb), proc_cgroup, root),
                       cuda=lambda device: pytest.fail("a cpu case read the GPU"))


def test_the_bound_is_weights_buffers_input_and_for_a_train_step_gradients():
    forward = fit.need(Case("mlp", "tiny", 8, mode="train", step="forward"))
    assert forward == fit.Need("float32", MLP_TINY_WEIGHTS, MLP_TINY_BUFFERS, 0, 8 * MLP_IN_BYTES,
                               build=MLP_TINY_WEIGHTS + MLP_TINY_BUFFERS)
    train = fit.need(Case("mlp", "tiny", 8, mode="train", step="train_step"))
    assert train.gradients == MLP_TINY_WEIGHTS and train.total == forward.total + MLP_TINY_WEIGHTS
    assert fit.need(Case("mlp", "tiny", 8, mode="eval", step="train_step")).gradients == MLP_TINY_WEIGHTS
    for graphless in ("no_grad", "eval_no_grad", "frozen", "inference_mode"):  # no graph, no gradients
        assert fit.need(Case("mlp", "tiny", 8, mode=graphless, step="train_step")).gradients == 0
    # finetune_head without --head: the smallest nn.Linear (the head, 144 x 10 + 10, is it here)
    assert fit.need(Case("mlp", "tiny", 8, mode="finetune_head", step="train_step")).gradients == (144 * 10 + 10) * 4
    named = Case("mlp", "tiny", 8, mode="finetune_head", step="train_step", head="body.0")
    assert fit.need(named).gradients == (256 * 144 + 144) * 4


def test_a_dtype_halves_floating_point_bytes_and_keeps_integer_buffers():
    need = fit.need(Case("mlp", "tiny", 8, dtype="bfloat16"))
    assert need.weights == MLP_TINY_WEIGHTS // 2 and need.inputs == 8 * MLP_IN_BYTES // 2
    assert need.buffers == 4 * (2 * 144 * 2 + 8)  # num_batches_tracked stays int64


def test_a_user_model_is_not_weighed(tmp_path):
    assert fit.need(Case("no_such_module:build", "tiny")) is None
    assert fit.refusal(Case("no_such_module:build", "tiny", memory_budget=1), readers=cpu_readers(tmp_path, 1)) is None


def test_a_case_is_refused_below_its_bound_and_let_through_above(tmp_path):
    case = Case("mlp", "tiny", 8)
    total = MLP_TINY_WEIGHTS + MLP_TINY_BUFFERS + 8 * MLP_IN_BYTES  # 421,832 B: 411.9 KiB
    reason = fit.refusal(case, readers=cpu_readers(tmp_path, 400))
    assert reason == ("needs at least 411.9 KiB (weights 399.4 KiB in float32, buffers 4.5 KiB, gradients 0 B, "
                      "input 8.0 KiB) and cpu has 400.0 KiB available (MemAvailable); a case that cannot fit is "
                      "not run")
    assert fit.refusal(case, readers=cpu_readers(tmp_path, total // 1024 + 1)) is None
    # what this process holds and releases for the case counts as room on the cpu
    assert fit.refusal(case, own_bytes=total - 400 * 1024, readers=cpu_readers(tmp_path, 400)) is None


def test_a_train_step_is_refused_where_the_forward_fits(tmp_path):
    readers = cpu_readers(tmp_path, 600)  # 600 KiB: the forward's 412 KiB fits, the train step's 811 KiB does not
    assert fit.refusal(Case("mlp", "tiny", 8, mode="train", step="forward"), readers=readers) is None
    reason = fit.refusal(Case("mlp", "tiny", 8, mode="train", step="train_step"), readers=readers)
    assert "gradients 399.4 KiB" in reason and "cpu has 600.0 KiB available" in reason


def test_the_budget_wins_when_smaller(tmp_path):
    plenty = cpu_readers(tmp_path, 10 ** 8)
    assert fit.refusal(Case("mlp", "tiny", 8, memory_budget=10 ** 6), readers=plenty) is None
    reason = fit.refusal(Case("mlp", "tiny", 8, memory_budget=400 * 1024), readers=plenty)
    assert reason.endswith("and the memory budget is 400.0 KiB (--memory-budget); a case that cannot fit is not run")
    # and the device when it is the smaller
    assert "cpu has 300.0 KiB available" in fit.refusal(Case("mlp", "tiny", 8, memory_budget=10 ** 6),
                                                         readers=cpu_readers(tmp_path, 300))


def test_the_budget_applies_where_the_device_cannot_be_read():
    blind = fit.Readers(cpu=lambda: None, cuda=lambda device: None)
    assert fit.refusal(Case("mlp", "tiny", 8), readers=blind) is None
    assert "memory budget is 1.0 KiB" in fit.refusal(Case("mlp", "tiny", 8, memory_budget=1024), readers=blind)


def _cgroup_v2(tmp_path, limits: dict[str, tuple[str, int]]):
    """A unified hierarchy under tmp_path/cg with the process in /a/b; ``limits``: folder -> (max, current)."""
    for folder, (maximum, current) in limits.items():
        d = tmp_path / "cg" / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.max").write_text(f"{maximum}\n")
        (d / "memory.current").write_text(f"{current}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/a/b\n")
    return str(proc), str(tmp_path / "cg")


def test_cgroup_v2_room_is_the_least_of_every_level_and_below_memavailable_wins(tmp_path):
    proc, root = _cgroup_v2(tmp_path, {"": ("max", 0), "a": (str(10 * 2 ** 20), 10 * 2 ** 20 - 2 ** 19),
                                       "a/b": ("max", 5 * 2 ** 20)})
    assert fit.cgroup_room(proc, root) == fit.Room(2 ** 19, "cgroup memory.max minus memory.current")
    room = fit.cpu_room(meminfo(tmp_path, 4 * 1024 * 1024), proc, root)
    assert room == fit.Room(2 ** 19, "cgroup memory.max minus memory.current")
    assert fit.cpu_room(meminfo(tmp_path, 256), proc, root) == fit.Room(256 * 1024, "MemAvailable")
    reason = fit.refusal(Case("mlp", "tiny", 8, mode="train", step="train_step"),
                         readers=cpu_readers(tmp_path, 4 * 1024 * 1024, proc, root))
    assert "cpu has 512.0 KiB available (cgroup memory.max minus memory.current)" in reason


def test_cgroup_v1_room_and_its_unlimited_default(tmp_path):
    base = tmp_path / "cg" / "memory"
    (base / "job").mkdir(parents=True)
    (base / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (base / "memory.usage_in_bytes").write_text("123\n")
    (base / "job" / "memory.limit_in_bytes").write_text(str(3 * 2 ** 20))
    (base / "job" / "memory.usage_in_bytes").write_text(str(2 ** 20))
    proc = tmp_path / "cgroup"
    proc.write_text("9:name=systemd:/\n4:memory:/job\n3:cpuset:/\n0::/\n")
    assert fit.cgroup_room(str(proc), str(tmp_path / "cg")) == fit.Room(
        2 * 2 ** 20, "cgroup memory.limit_in_bytes minus memory.usage_in_bytes")
    (base / "job" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert fit.cgroup_room(str(proc), str(tmp_path / "cg")) is None


def test_cuda_room_is_free_plus_this_process_reserve_and_held_bytes_are_not_counted_twice():
    asked = []

    def mem_get_info(device):
        asked.append(device)
        return 300 * 1024, 80 * 2 ** 30

    room = fit.cuda_room("cuda:1", mem_get_info=mem_get_info, memory_reserved=lambda device: 100 * 1024)
    assert room == fit.Room(400 * 1024, "free 300.0 KiB plus 100.0 KiB this process reserves") and asked == ["cuda:1"]
    readers = fit.Readers(cpu=lambda: pytest.fail("a cuda case read the cpu"), cuda=lambda device: room)
    case = Case("mlp", "tiny", 8, device="cuda:1")  # not validated: no GPU needed
    assert fit.refusal(case, own_bytes=10 ** 6, readers=readers) == (
        "needs at least 411.9 KiB (weights 399.4 KiB in float32, buffers 4.5 KiB, gradients 0 B, input 8.0 KiB) "
        "and cuda:1 has 400.0 KiB available (free 300.0 KiB plus 100.0 KiB this process reserves); a case that "
        "cannot fit is not run")
    roomy = fit.Readers(cuda=lambda device: fit.Room(2 ** 20, "fake"))
    assert fit.refusal(case, readers=roomy) is None


def test_weights_equal_a_real_builds_count_and_bytes():
    for name in ("mlp", "cnn", "transformer"):
        model, _ = build_model(name, "tiny")
        params, nbytes = weights(name, "tiny", "float32")
        assert params == parameter_count(model) and nbytes == 4 * params  # every parameter is float32
        assert weights(name, "tiny", "bfloat16") == (params, 2 * params)


def test_the_session_refuses_before_building_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(fit, "READERS", cpu_readers(tmp_path, 10 ** 8))
    built = []
    session = Session()
    original = session.workload
    monkeypatch.setattr(session, "workload", lambda case: built.append(case) or original(case))
    refused = session.measure(Case("mlp", "tiny", 2, mode="eval", max_time_s=0.02, memory_budget=1024))
    assert refused["status"] == "not_applicable" and built == []
    assert refused["error"].startswith("needs at least 405.9 KiB (weights 399.4 KiB in float32") and \
        refused["error"].endswith("the memory budget is 1.0 KiB (--memory-budget); a case that cannot fit is not run")
    assert (refused["params"], refused["param_bytes"], refused["case_memory_budget_bytes"]) == (102250, 409000, 1024)
    ran = session.measure(Case("mlp", "tiny", 2, mode="eval", max_time_s=0.02))
    assert ran["status"] == "ok" and (ran["params"], ran["param_bytes"]) == (102250, 409000)
    assert ran["case_memory_budget_bytes"] is None and len(built) == 1


def test_run_with_a_tiny_memory_budget_records_not_applicable_and_exits_0(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--models", "mlp", "--sizes", "tiny", "--batch-sizes", "2", "--modes", "eval", "train",
                 "--steps", "forward", "train_step", "--max-time", "0.05", "--no-report", "--memory-budget", "1KiB",
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    assert {r["status"] for r in records} == {"not_applicable"}
    assert all("the memory budget is 1.0 KiB" in r["error"] and r["params"] == 102250 for r in records)
    assert {r["case_memory_budget_bytes"] for r in records} == {1024}


@pytest.mark.parametrize("budget", ["0", "lots", "8EiB"])
def test_a_bad_memory_budget_is_one_line_exit_2(capsys, tmp_path, budget):
    assert main(["run", "--models", "mlp", "--memory-budget", budget, "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"gradbench: error: bad --memory-budget {budget!r}")


def test_a_memory_budget_in_the_config_file(tmp_path):
    from gradbench.cli import build_parser
    from gradbench.settings import run_settings

    config = tmp_path / "c.toml"
    config.write_text('models = ["mlp"]\nmemory_budget = "2KiB"\n')
    settings = run_settings(build_parser().parse_args(["run", "--config", str(config)]))
    assert {c.memory_budget for c in settings.cases} == {2048}
    config.write_text('memory_budget = 4096\n')
    assert run_settings(build_parser().parse_args(["run", "--config", str(config)])).grid.memory_budget == 4096
    config.write_text('memory_budget = true\n')
    with pytest.raises(Exception, match="bad 'memory_budget' in --config"):
        run_settings(build_parser().parse_args(["run", "--config", str(config)]))


def test_a_case_validates_its_budget():
    assert Case(memory_budget=1).validate().memory_budget == 1
    for bad in (0, True, 1.5, "8GiB"):
        with pytest.raises(ValueError, match="bad memory budget"):
            Case(memory_budget=bad).validate()
    assert "memory_budget" not in Case(memory_budget=5).identity()  # a setting, not which case it is


def test_llama_8b_is_refused_on_a_24_gib_machine_and_never_built(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setattr(fit, "READERS", cpu_readers(tmp_path, 24 * 1024 * 1024))
    session = Session()
    monkeypatch.setattr(session, "workload", lambda case: pytest.fail("a case that cannot fit was built"))
    record = session.measure(Case("llama", "8b", 1, max_time_s=0.05))
    assert record["status"] == "not_applicable"
    assert (record["params"], record["param_bytes"]) == (8_030_261_248, 4 * 8_030_261_248)
    assert record["error"].startswith("needs at least 29.9 GiB (weights 29.9 GiB in float32, buffers ")
    assert record["error"].endswith("and cpu has 24.0 GiB available (MemAvailable); a case that cannot fit is not run")
    # a case not applicable by design says so, even where it cannot fit either (the design holds anywhere)
    by_design = session.measure(Case("llama", "8b", 1, mode="eval_no_grad", step="train_step", max_time_s=0.05))
    assert by_design["status"] == "not_applicable"
    assert by_design["error"] == "mode 'eval_no_grad': it records no autograd graph, so there is no train step"
    assert by_design["params"] == 8_030_261_248


def test_a_bfloat16_or_cuda_case_needs_its_float32_build_on_the_cpu(tmp_path):
    """A family is built in float32 on the CPU and cast or moved after: llama 8b in bfloat16 (15 GiB) passes
    the device bound on a 24 GiB machine, its 29.9 GiB float32 build does not."""
    weights = fit.need(Case("mlp", "tiny", 8, dtype="bfloat16"))
    in_float32 = fit.need(Case("mlp", "tiny", 8, dtype="float32"))
    assert weights.build == in_float32.weights + in_float32.buffers == 2 * weights.weights + 4 * 2 * 144 * 4 + 4 * 8
    room_kb = (weights.total + weights.build) // 2 // 1024  # above the bfloat16 bound, below the float32 build
    assert weights.total < room_kb * 1024 < weights.build
    cpu = cpu_readers(tmp_path, room_kb)
    reason = fit.refusal(Case("mlp", "tiny", 8, dtype="bfloat16"), readers=cpu)
    assert reason.startswith("building the model needs at least 403.9 KiB on the cpu (its weights and buffers in "
                             "float32, before they are cast to bfloat16) and cpu has ")
    assert fit.refusal(Case("mlp", "tiny", 8, dtype="float32"), readers=cpu).startswith("needs at least")  # its own
    on_gpu = fit.Readers(cpu=cpu.cpu, cuda=lambda device: fit.Room(2 ** 40, "fake"))
    reason = fit.refusal(Case("mlp", "tiny", 8, dtype="bfloat16", device="cuda:0"), readers=on_gpu)
    assert "(its weights and buffers in float32, before they are cast to bfloat16 and moved to cuda:0)" in reason
    # a CUDA case's --memory-budget is the GPU's: the host build is set against the host only
    roomy = fit.Readers(cpu=lambda: fit.Room(2 ** 40, "fake"), cuda=lambda device: fit.Room(2 ** 40, "fake"))
    assert fit.refusal(Case("mlp", "tiny", 8, dtype="bfloat16", device="cuda:0", memory_budget=300 * 1024),
                       readers=roomy) is None


def test_llama_8b_in_bfloat16_is_refused_for_its_float32_build(tmp_path):
    pytest.importorskip("transformers")
    reason = fit.refusal(Case("llama", "8b", 1, dtype="bfloat16", seq_len=128),
                         readers=cpu_readers(tmp_path, 24 * 1024 * 1024))
    assert reason.startswith("building the model needs at least 29.9 GiB on the cpu (its weights and buffers in "
                             "float32, before they are cast to bfloat16) and cpu has 24.0 GiB available")
