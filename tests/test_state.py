"""Clean global state per case: a model's code that changes torch's global switches is named in a
warning and in the record, undone, and cannot change another case's numbers."""
import gc
import os
import subprocess
import sys

import pytest
import torch

import gradbench
from gradbench import state
from gradbench.results import read_jsonl
from gradbench.workload import Workload

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FAST = 0.02


@pytest.fixture
def process_state_kept(monkeypatch):
    """What state_changers changes, put back after the test whatever gradbench did (so that a test run
    against a gradbench that does not restore it leaves the other tests alone)."""
    import torch.nn.functional as F

    monkeypatch.setattr(F, "dropout", F.dropout)
    monkeypatch.setattr(torch, "relu", torch.relu)
    monkeypatch.setattr(torch.nn.Module, "zero_grad", torch.nn.Module.zero_grad)
    gc_enabled, multithreading = gc.isenabled(), torch.autograd.is_multithreading_enabled()
    yield
    gc.enable() if gc_enabled else gc.disable()
    torch.set_flush_denormal(False)
    torch._C._set_multithreading_enabled(multithreading)
    while torch._C._len_torch_function_stack():
        torch._C._pop_torch_function_stack()
    while torch._C._len_torch_dispatch_stack():
        torch._C._pop_torch_dispatch_stack()


def test_module_that_turns_grad_off_at_import_is_named_and_undone():
    workload = Workload("flips_grad:build", "x", 4, "cpu", "float32")
    assert torch.is_grad_enabled()  # restored once the import was over
    assert "flips_grad:build" in workload.state_warning and "grad mode enabled True -> False" in workload.state_warning
    r = gradbench.run_case(model="flips_grad:build", size="x", batch_size=4, mode="train", max_time_s=FAST,
                           workload=workload)
    assert r["global_state_warning"] == workload.state_warning
    assert r["graph_recorded"] is True and r["dropout_active"] is True
    assert r["saved_bytes"] == 2 * (4 * 8) * 4  # the graph as with grad on: Linear(8, 2)'s input, Dropout's noise
    clean = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
    assert clean["global_state_warning"] is None and clean["graph_recorded"] is True


def test_forward_that_changes_state_is_named_for_its_case_and_undone():
    r = gradbench.run_case(model="user_models:changes_dtype", size="x", batch_size=2, mode="eval", max_time_s=FAST)
    assert r["status"] == "ok"
    assert "while running mode 'eval'" in r["global_state_warning"]
    assert "default dtype torch.float32 -> torch.float64" in r["global_state_warning"]
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("how, mode, named, labelled", [
    ("train", "eval", "put 3 module(s) in train mode (_UndoesItsMode, fc, drop)", (False, True)),
    ("thaw", "frozen", "set requires_grad=True on 2 parameter(s) (fc.weight, fc.bias)", (True, False)),
])
def test_a_forward_that_undoes_its_mode_is_named_and_later_passes_measure_the_mode(how, mode, named, labelled):
    workload = Workload("user_models:undoes_its_mode", how, 4, "cpu", "float32")
    r = gradbench.run_case(model="user_models:undoes_its_mode", size=how, batch_size=4, mode=mode, max_time_s=FAST,
                           workload=workload)
    assert r["status"] == "ok", r["error"]
    assert f"undid mode {mode!r} in its own code: {named}" in (r["global_state_warning"] or ""), \
        r["global_state_warning"]
    assert workload.model.seen[-1] == labelled  # the timing pass ran in the mode its record names
    assert all(m.training for m in workload.model.modules()) and all(p.requires_grad for p in
                                                                     workload.model.parameters())  # as built


def test_modes_set_their_switches_whatever_the_caller_left_on():
    torch.set_grad_enabled(False)
    try:
        train = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
        assert not torch.is_grad_enabled()  # the caller's own setting survives the case
    finally:
        torch.set_grad_enabled(True)
    assert train["graph_recorded"] is True
    assert train["saved_bytes"] == gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train",
                                                      max_time_s=FAST)["saved_bytes"]  # as with grad on
    assert train["global_state_warning"] is None  # the caller's state is not the model's doing


def test_clean_state_names_changes_and_restores_the_callers_state():
    threads = torch.get_num_threads()
    expected = state.expected_state(seed=3)
    torch.manual_seed(11)
    caller_draw = torch.rand(1)
    torch.manual_seed(11)
    with state.CleanState(expected) as guard:
        assert torch.initial_seed() == 3
        torch.set_num_threads(threads + 1)
        torch.use_deterministic_algorithms(True)
    assert sorted(guard.changes) == ["deterministic algorithms False -> True", f"threads {threads} -> {threads + 1}"]
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(1), caller_draw)  # the caller's RNG stream was not consumed


def test_check_and_restore():
    expected = state.expected_state(seed=None)
    torch.set_anomaly_enabled(True)
    assert state.check_and_restore(expected) == ["anomaly detection False -> True"]
    assert not torch.is_anomaly_enabled()
    assert state.check_and_restore(expected) == []


def test_check_and_restore_removes_global_module_hooks_and_returns_to_the_directory(tmp_path):
    from torch.nn.modules import module as nn_module

    expected = state.expected_state(seed=None)
    here = os.getcwd()
    handle = nn_module.register_module_forward_pre_hook(print)
    os.chdir(tmp_path)
    try:
        assert state.check_and_restore(expected) == ["global module forward pre-hooks [] -> [builtins.print]",
                                                     f"working directory {here!r} -> {str(tmp_path)!r}"]
        assert not nn_module._global_forward_pre_hooks and os.getcwd() == here
    finally:
        handle.remove()
        os.chdir(here)


def test_the_callers_own_global_hook_sits_out_the_case_and_survives_it():
    from torch.nn.modules import module as nn_module

    calls = []
    handle = nn_module.register_module_forward_hook(lambda *args: calls.append(1))
    try:
        r = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
        assert r["status"] == "ok" and r["global_state_warning"] is None
        assert calls == []  # not run inside the case
        torch.nn.Linear(2, 2)(torch.ones(2))
        assert calls == [1]  # and the caller's again afterwards
    finally:
        handle.remove()


def test_sweep_names_the_module_and_later_cases_are_unaffected(tmp_path):
    out = tmp_path / "leak.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "gradbench.cli", "run", "--models", f"{FIXTURES}/flips_grad.py:build", "mlp",
         "--sizes", "tiny", "--batch-sizes", "4", "--modes", "train", "--steps", "forward", "--max-time", "0.02",
         "--no-report", "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "gradbench: warning: model " in result.stderr and "flips_grad.py:build" in result.stderr
    records = {r["model"].rsplit(":", 1)[-1]: r for r in read_jsonl(out)[0]}
    assert "grad mode enabled True -> False" in records["build"]["global_state_warning"]
    mlp = records["mlp"]
    assert mlp["global_state_warning"] is None
    assert mlp["graph_recorded"] is True and mlp["status"] == "ok"
    assert mlp["saved_bytes"] == gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train",
                                                    max_time_s=FAST)["saved_bytes"]  # as with no leaky model before it


@pytest.mark.parametrize("size, named", [
    ("mkldnn_off@build", "mkldnn.enabled True -> False"),
    ("float64@build", "default dtype torch.float32 -> torch.float64"),
    ("grad_off@forward", "grad mode enabled True -> False"),
    ("autocast_on@forward", "autocast (cpu) False -> True"),
    ("reseed@forward", "RNG seed"),
    ("forward_hook@build", "global module forward hooks [] -> [state_changers.skip_dropout]"),
    ("forward_hook@forward", "global module forward hooks [] -> [state_changers.skip_dropout"),
    ("forward_pre_hook@build", "global module forward pre-hooks [] -> [state_changers.watch]"),
    ("backward_hook@build", "global module backward hooks [] -> [state_changers.watch]"),
    ("backward_pre_hook@forward", "global module backward pre-hooks [] -> [state_changers.watch"),
    ("chdir@build", "working directory"),
    ("chdir@forward", "working directory"),
    ("patch_dropout@build", "torch.nn.functional.dropout replaced by state_changers.no_dropout"),
    ("patch_dropout@forward", "torch.nn.functional.dropout replaced by state_changers.no_dropout"),
    ("patch_relu@build", "torch.relu replaced by state_changers.relu_unchanged"),
    ("patch_module@build", "torch.nn.Module.zero_grad replaced by state_changers.no_zero_grad"),
    ("function_mode@build", "torch function modes [] -> [state_changers.SkipsDropout]"),
    ("function_mode@forward", "torch function modes [] -> [state_changers.SkipsDropout"),
    ("dispatch_mode@build", "torch dispatch modes [] -> [state_changers.PassesThrough]"),
    ("dispatch_mode@forward", "torch dispatch modes [] -> [state_changers.PassesThrough"),
    ("gc_off@build", "garbage collector enabled True -> False"),
    ("gc_off@forward", "garbage collector enabled True -> False"),
    ("flush_denormal@build", "flush denormal False -> True"),
    ("autograd_single_thread@forward", "autograd multithreading True -> False"),
    ("ignore_warnings@build", "warnings filter ignore Warning added"),
    ("ignore_warnings@forward", "warnings filter ignore Warning added"),
])
def test_every_kind_of_change_is_named_and_the_next_case_is_clean(size, named, process_state_kept):
    before = state.snapshot()
    r = gradbench.run_case(model="state_changers:build", size=size, batch_size=4, mode="train", max_time_s=FAST)
    assert named in (r["global_state_warning"] or ""), r["global_state_warning"]
    after = state.snapshot()
    assert {k: v for k, v in after.items() if k != "RNG seed"} == {k: v for k, v in before.items() if k != "RNG seed"}
    clean = gradbench.run_case(model="cnn", size="tiny", batch_size=4, mode="eval_no_grad", max_time_s=FAST)
    assert clean["global_state_warning"] is None


BEHAVIOUR = ("status", "dropout_active", "dropout_evidence", "stochastic_ops", "saved_bytes", "graph_recorded",
             "grads_computed", "global_state_warning")


@pytest.mark.parametrize("change, named", [
    ("patch_dropout", "torch.nn.functional.dropout replaced by state_changers.no_dropout"),
    ("function_mode", "torch function modes [] -> [state_changers.SkipsDropout]"),
    ("dispatch_mode", "torch dispatch modes [] -> [state_changers.PassesThrough]"),
    ("patch_relu", "torch.relu replaced by state_changers.relu_unchanged"),
])
def test_the_next_built_in_model_measures_as_it_does_alone(change, named, process_state_kept):
    """Issue 24: a factory that monkeypatched F.dropout, or left a function mode pushed, made mlp's train
    record say dropout_active False and saved_bytes 23040 (41472 alone), with no warning anywhere."""
    alone = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
    assert alone["dropout_active"] is True and alone["global_state_warning"] is None
    changer = gradbench.run_case(model="state_changers:build", size=f"{change}@build", batch_size=4, mode="train",
                                 max_time_s=FAST)
    assert named in (changer["global_state_warning"] or ""), changer["global_state_warning"]
    after = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
    assert {f: after[f] for f in BEHAVIOUR} == {f: alone[f] for f in BEHAVIOUR}


def test_a_callers_own_function_mode_sits_out_the_case_and_survives_it():
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class CountsLinear(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            CountsLinear.calls += func is F.linear
            return func(*args, **(kwargs or {}))

    with CountsLinear():
        r = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
        assert r["status"] == "ok" and r["global_state_warning"] is None
        assert CountsLinear.calls == 0  # not run inside the case: the model's forwards are not intercepted
        torch.nn.Linear(2, 2)(torch.ones(2))
        assert CountsLinear.calls == 1  # and the caller's again afterwards


def test_check_and_restore_names_what_a_model_left_behind_in_one_line_each(process_state_kept):
    import torch.nn.functional as F

    from state_changers import CHANGES

    expected = state.expected_state(seed=None)
    dropout = F.dropout
    for change in ("patch_dropout", "function_mode", "dispatch_mode"):
        CHANGES[change]()
    assert state.check_and_restore(expected) == [
        "torch.nn.functional.dropout replaced by state_changers.no_dropout",
        "torch function modes [] -> [state_changers.SkipsDropout]",
        "torch dispatch modes [] -> [state_changers.PassesThrough]"]
    assert F.dropout is dropout
    assert not torch._C._len_torch_function_stack() and not torch._C._len_torch_dispatch_stack()
    assert state.check_and_restore(expected) == []


def test_what_torch_itself_rebinds_is_not_a_change():
    """torch.compile's first call wraps torch.manual_seed and tags nn.Module.__init__ (torch._dynamo), and
    adds an 'once' warnings filter for SymPy: torch's doing, not a model's, and left as torch set it."""
    expected = state.expected_state(seed=None)
    compiled = torch.compile(torch.nn.Linear(2, 2), backend="eager")
    compiled(torch.ones(2)).sum().backward()
    assert state.check_and_restore(expected) == []


def test_a_global_module_hook_from_one_model_does_not_reach_the_next():
    """A hook on every module's forward, left registered by one model's factory, would run in every later
    model's forward: here it turns Dropout into the identity."""
    hooked = gradbench.run_case(model="state_changers:build", size="forward_hook@build", batch_size=4, mode="train",
                                max_time_s=FAST)
    assert "skip_dropout" in hooked["global_state_warning"]
    assert not torch.nn.modules.module._global_forward_hooks
    mlp = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
    assert mlp["dropout_active"] is True and mlp["global_state_warning"] is None


def test_a_forward_that_turns_grad_off_is_named_while_the_record_shows_what_it_does():
    r = gradbench.run_case(model="state_changers:build", size="grad_off@forward", batch_size=4, mode="train",
                           max_time_s=FAST)
    assert "inside its forward in mode 'train'" in r["global_state_warning"]
    assert r["graph_recorded"] is False  # true of this model: its forward runs without grad


def test_negative_seed_is_not_a_change():
    r = gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="eval", seed=-5, max_time_s=FAST)
    assert r["status"] == "ok" and r["global_state_warning"] is None


def test_run_case_leaves_python_and_numpy_random_streams_alone():
    import random

    import numpy as np

    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    gradbench.run_case(model="mlp", size="tiny", batch_size=4, mode="train", max_time_s=FAST)
    assert (random.random(), np.random.rand()) == expected
