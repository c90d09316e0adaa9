"""One Session owns the workload cache and the failure and not-applicable policy for every front end."""
from __future__ import annotations

import contextlib
import statistics

import pytest

from gradbench.case import Case
from gradbench.models import BUILTIN_MODELS
from gradbench.session import Session, not_applicable, run_case

FAST = 0.02


def user(name: str) -> str:
    return f"user_models:{name}"


@pytest.mark.parametrize("case, reason", [
    (Case("mlp", "tiny", 2, mode="no_grad", step="train_step"), "mode 'no_grad': it records no autograd graph"),
    (Case("mlp", "tiny", 2, dtype="bfloat16", autocast="bfloat16"), "autocast 'bfloat16' lowers float32 work"),
    (Case("mlp", "tiny", 2, compile="reduce-overhead"), "compile 'reduce-overhead' with autocast 'none' needs a CUDA"),
])
def test_cases_that_cannot_run_by_design_are_named_with_the_reason(case, reason):
    assert reason in not_applicable(case)


def test_a_runnable_case_is_applicable_and_as_built_asks_the_model():
    import torch

    assert not_applicable(Case("mlp", "tiny", 2, mode="train", step="train_step")) is None
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    assert "no parameter of the model as built requires grad" in \
        not_applicable(Case("mlp", "tiny", 2, mode="as_built", step="train_step"), frozen)


def test_a_workload_is_built_once_for_the_cases_that_share_it_and_only_the_last_is_kept():
    builds = []

    @contextlib.contextmanager
    def building(key):
        builds.append(key)
        yield

    session = Session(building=building)
    a, b = Case("mlp", "tiny", 2, mode="eval"), Case("mlp", "tiny", 2, mode="train")
    assert session.workload(a) is session.workload(b)
    other = Case("mlp", "tiny", 3)
    session.workload(other)
    assert builds == [a.workload_key, other.workload_key] and list(session._workloads) == [other.workload_key]
    session.release()
    assert session._workloads == {}


def test_a_workload_that_cannot_be_built_is_a_record_with_its_message_and_traceback():
    record = Session("r1").measure(Case(user("raises"), "x", 2, max_time_s=FAST).validate())
    assert record["status"] == "error" and record["error"] == \
        "ValueError: model 'user_models:raises' failed for size 'x': RuntimeError: factory exploded"
    assert "factory exploded" in record["traceback"] and record["run_id"] == "r1"


def test_the_models_own_keyboard_interrupt_while_building_is_an_error_not_a_stop():
    record = Session().measure(Case(user("interrupts_in_factory"), "x", 2, max_time_s=FAST).validate())
    assert record["status"] == "error" and "KeyboardInterrupt raised inside the model's code" in record["error"]


def test_a_case_that_cannot_run_is_not_applicable_and_an_ok_case_is_measured():
    session = Session()
    na = session.measure(Case("mlp", "tiny", 2, mode="eval_no_grad", step="train_step", max_time_s=FAST))
    assert na["status"] == "not_applicable"
    assert na["error"] == "mode 'eval_no_grad': it records no autograd graph, so there is no train step"
    mlp_params = sum(p.numel() for p in BUILTIN_MODELS["mlp"]("tiny")[0].parameters())
    assert na["params"] == mlp_params and na["time_median_s"] is None  # the case named in full, nothing measured
    ok = session.measure(Case("mlp", "tiny", 2, mode="eval", max_time_s=FAST))
    assert ok["status"] == "ok" and ok["time_median_s"] == statistics.median(ok["samples_s"])
    assert ok["measure_wall_s"] >= ok["time_measured_s"]


def test_run_case_raises_on_bad_values_but_records_what_the_models_code_did():
    with pytest.raises(ValueError, match="mode"):
        run_case(model="mlp", size="tiny", mode="evil")
    with pytest.raises(ValueError, match="factory exploded"):  # the caller's model: bad input to run_case
        run_case(model=user("raises"), size="x", batch_size=2, max_time_s=FAST)
    record = run_case(model=user("interrupts_in_factory"), size="x", batch_size=2, max_time_s=FAST)
    assert record["status"] == "error" and "KeyboardInterrupt" in record["error"]


def test_a_record_equals_the_dict_it_reads_as_and_says_how_to_change_a_copy():
    record = run_case(model="mlp", size="tiny", batch_size=2, max_time_s=FAST)
    assert record == dict(record) == record.to_json() and isinstance(dict(record)["samples_s"], list)
    with pytest.raises(TypeError, match=r"record.replace\(status=...\)"):
        record["status"] = "error"
    with pytest.raises(TypeError, match="'x' is not a record field; dict\\(record\\) is a plain copy"):
        record["x"] = 1


@pytest.mark.parametrize("call", ["harness", "capacity"])
def test_an_unknown_mode_is_named_with_the_valid_ones_by_every_front_end(call):
    if call == "harness":
        from gradbench.harness import BenchmarkCase

        with pytest.raises(ValueError, match="unknown mode 'bogus'"):
            BenchmarkCase("mlp", "tiny", 8, "cpu", mode="bogus")
    else:
        from gradbench.capacity import capacity_of

        assert "unknown mode 'bogus'" in capacity_of("mlp", "tiny", "cpu", "float32", "bogus", "forward", 2 ** 26)["error"]


def test_capacity_times_its_answer_with_no_probe_still_built(monkeypatch):
    import gc

    import gradbench.capacity as capacity
    import gradbench.session as session
    from gradbench.workload import Workload

    live, timed, real = [], [], session.run_case
    before = {id(w) for w in gc.get_objects() if isinstance(w, Workload)}  # other tests' (the harness keeps its own)

    def spy(*args, **kwargs):
        live.extend(w.key for w in gc.get_objects() if isinstance(w, Workload) and id(w) not in before)
        timed.append(real(*args, **kwargs))
        return timed[-1]

    monkeypatch.setattr(session, "run_case", spy)
    out = capacity.capacity_of("mlp", "tiny", "cpu", "float32", "eval_no_grad", "forward", 16 * 2 ** 20,
                               time_it=True, max_time_s=FAST)
    assert live == []
    # the answer is the largest batch within the budget, timed once: its samples per second come from that record
    assert out["error"] is None and out["bytes_at_max"] <= 16 * 2 ** 20 < out["bytes_at_next"]
    assert [r["batch_size"] for r in timed] == [out["max_batch_size"]]
    assert out["samples_per_s"] == out["max_batch_size"] / timed[0]["time_median_s"]


def test_a_sys_exit_in_the_models_forward_is_a_capacity_error_not_the_end_of_the_command():
    from gradbench.capacity import capacity_of

    out = capacity_of(user("exits"), "x", "cpu", "float32", "eval", "forward", 2 ** 26)
    assert out["max_batch_size"] is None and "SystemExit raised inside the model's code" in out["error"]


def test_saved_bytes_are_taken_with_no_flop_counter_active(tmp_path, monkeypatch):
    """A flop counter's module hooks add autograd nodes of their own, which kept tensors the saved-byte count
    took as the model's (transformers' BERT, eval train step: 3% more than its forward step): a train step's
    flops are counted in a step of their own."""
    import textwrap

    (tmp_path / "spy.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

        SEEN = []

        class Spy(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(8, 8)

            def forward(self, x):
                hooks = torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
                SEEN.append((hooks, [type(m).__name__ for m in _get_current_dispatch_mode_stack()]))
                return self.lin(x)

        def make(size="small"):
            return Spy(), lambda b: torch.randn(b, 8)
    """))
    monkeypatch.chdir(tmp_path)
    record = Session().measure(Case(model="spy.py:make", size="small", batch_size=2, mode="train",
                                    step="train_step", max_time_s=0.02).validate(here=False), timed=False)
    import sys

    [spy] = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(tmp_path / "spy.py")]
    assert record["status"] == "ok" and record["flops"] > 0
    counted = [modes for hooks, modes in spy.SEEN if hooks]
    assert counted and not any("FlopCounterMode" in m or "_FlopCounterMode" in m for modes in counted for m in modes)
    assert any("_FlopCounterMode" in modes or "FlopCounterMode" in modes for _, modes in spy.SEEN)
