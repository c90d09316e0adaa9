"""The plan is data (plan.py): batches per workload group and repeat, resume, isolation and retries, with
no process started; and the manager/worker messages are types."""
from __future__ import annotations

import pickle

import pytest

from gradbench.case import Case
from gradbench.executors import messages
from gradbench.plan import Batch, Grid, Plan, needs_retry
from gradbench.record import case_key

GRID = Grid(models=("mlp", "cnn"), sizes=("tiny",), batch_sizes=(2,), modes=("train", "eval"),
            steps=("forward",))


def key(case: Case) -> tuple:
    return case_key(case.identity())


def test_first_batches_are_each_group_once_per_repeat_in_turn():
    cases = tuple(GRID.cases())
    batches = Plan(cases, repeat=2).first_batches()
    assert [(b.cases[0].model, b.repeat, b.attempt) for b in batches] == [("mlp", 1, 1), ("mlp", 2, 1),
                                                                          ("cnn", 1, 1), ("cnn", 2, 1)]
    assert all(len({c.group_key for c in b.cases}) == 1 for b in batches)
    assert sorted(map(repr, (c for b in batches if b.repeat == 1 for c in b.cases))) == sorted(map(repr, cases))


def test_done_pairs_are_left_out_and_isolate_case_gives_each_case_a_batch():
    cases = tuple(GRID.cases())
    done = frozenset({(key(cases[0]), 1)})
    batches = Plan(cases, repeat=1, done=done).first_batches()
    assert cases[0] not in [c for b in batches for c in b.cases]
    isolated = Plan(cases, isolate="case", done=done).first_batches()
    assert all(len(b.cases) == 1 for b in isolated) and len(isolated) == len(cases) - 1


def test_the_drawn_order_repeats_for_a_seed_and_differs_between_repeats_and_attempts():
    group = [Case("mlp", "tiny", 2, mode=m, step="forward") for m in ("train", "eval", "no_grad", "eval_no_grad",
                                                                       "frozen", "inference_mode")]
    plan = Plan(tuple(group), repeat=3, retry_untrusted=1)
    first = plan.first_batches()
    assert first == Plan(tuple(group), repeat=3, retry_untrusted=1).first_batches()
    assert len({b.cases for b in first}) > 1
    retry = plan.retry_batches({2: group}, attempt=2)
    assert [(b.repeat, b.attempt) for b in retry] == [(2, 2)] and sorted(map(repr, retry[0].cases)) == \
        sorted(map(repr, group))


def test_resumed_untrusted_cases_are_retried_only_when_retries_are_asked_and_the_repeat_exists():
    cases = tuple(GRID.cases())
    untrusted = frozenset({(key(cases[0]), 1, 1), (key(cases[1]), 3, 1)})
    assert Plan(cases, repeat=2, untrusted_done=untrusted).resumed_retries() == {}
    assert Plan(cases, repeat=2, retry_untrusted=1, untrusted_done=untrusted).resumed_retries() == \
        {2: {1: [cases[0]]}}


def test_a_resumed_retry_continues_from_the_attempts_made_and_never_beyond_what_was_asked():
    cases = tuple(GRID.cases())
    untrusted = frozenset({(key(cases[0]), 1, 2), (key(cases[1]), 1, 3), (key(cases[2]), 2, 1)})
    assert Plan(cases, repeat=2, retry_untrusted=2, untrusted_done=untrusted).resumed_retries() == \
        {3: {1: [cases[0]]}, 2: {2: [cases[2]]}}  # cases[1] has had its 1 + 2 attempts


@pytest.mark.parametrize("bad", [dict(isolate="thread"), dict(repeat=0), dict(retry_untrusted=-1)])
def test_a_bad_plan_is_refused_naming_the_value(bad):
    with pytest.raises(ValueError, match="isolation 'thread'|repeat|retries"):
        Plan((), **bad)


def test_needs_retry_is_an_ok_case_judged_untrusted_only():
    assert needs_retry({"status": "ok", "time_trusted": False})
    assert not needs_retry({"status": "ok", "time_trusted": None})
    assert not needs_retry({"status": "error", "time_trusted": False})


def test_messages_survive_the_pipe_and_say_what_they_are():
    case = Case("mlp", "tiny", 2)
    for message in (messages.Measure((case,), "r"), messages.Started(case), messages.Measured({"status": "ok"}),
                    messages.Importing("m:f"), messages.Built(case.workload_key), messages.BatchDone()):
        assert pickle.loads(pickle.dumps(message)) == message
    assert isinstance(Batch((case,), 1), Batch) and Batch((case,), 1).attempt == 1


def grid_of(**fields) -> Grid:
    return Grid(**{"batch_sizes": (2,), "modes": ("eval",), "steps": ("forward",), **fields})


def workloads(grid: Grid) -> list[tuple]:
    return [(c.model, c.size, c.seq_len, c.image_size) for c in grid.cases()]


def test_each_model_takes_the_sizes_and_input_axis_it_offers():
    grid = grid_of(models=("resnet", "bert", "mlp", "m:f"), sizes=("50", "base", "tiny"), seq_lens=(16, 32))
    grid.check()
    assert workloads(grid) == [("resnet", "50", None, 224), ("bert", "base", 16, None), ("bert", "base", 32, None),
                               ("mlp", "tiny", None, None),
                               *[("m:f", size, n, None) for size in ("50", "base", "tiny") for n in (16, 32)]]
    # none given: the toys tiny and small, a zoo family its first size at its default input; a user model no axis
    assert workloads(grid_of(models=("transformer", "vit", "gpt2", "m:f"))) == [
        ("transformer", "tiny", 32, None), ("transformer", "small", 32, None), ("vit", "ti_16", None, 224),
        ("gpt2", "small", 128, None), ("m:f", "tiny", None, None), ("m:f", "small", None, None)]
    assert workloads(grid_of(models=("resnet", "vit"), sizes=("18",), image_sizes=(64, 32)))[:2] == \
        [("resnet", "18", None, 64), ("resnet", "18", None, 32)]


@pytest.mark.parametrize("fields, message", [
    (dict(models=("resnet", "bert"), sizes=("50", "xl")),
     "unknown size 'xl': no model in the grid offers it; valid sizes: resnet: 18, 34, 50, 101, 152; bert: base, large"),
    (dict(models=("resnet", "bert"), sizes=("50",)),
     "no size given for bert (its sizes: base, large); add one to --sizes, or run it apart"),
    (dict(models=("mlp", "cnn"), seq_lens=(8,)),
     "--seq-len given, but no model in the grid takes one (transformer, bert, gpt2, llama and user models do)"),
    (dict(models=("bert",), image_sizes=(8,)),
     "--image-size given, but no model in the grid takes one (resnet, vit do)"),
])
def test_sizes_and_axes_no_model_takes_are_refused_in_one_line(fields, message):
    with pytest.raises(ValueError) as caught:
        grid_of(**fields).check()
    assert str(caught.value) == message


def test_the_toys_cases_are_in_their_fixed_order_and_old_workloads_draw_their_old_order():
    from gradbench.plan import order_key, shuffled

    cases = Grid().cases()
    assert len(cases) == 3 * 2 * 3 * 6 * 2  # models x sizes x batches x modes x steps, as before the axes
    assert [c.model for c in cases[::72]] == ["mlp", "cnn", "transformer"]
    # a workload that existed before the input axes draws its order from the key it had then
    for case in (Case("mlp", "tiny", 8), Case("transformer", "tiny", 8), Case("m:f", "x", 8)):
        assert order_key(case) == (case.model, case.size, 8, "cpu", "float32", 0)
    assert order_key(Case("transformer", "tiny", 8, seq_len=64)) == ("transformer", "tiny", 8, "cpu", "float32", 0,
                                                                   64, None)
    assert order_key(Case("mlp", "tiny", 8, compile="default")) == ("mlp", "tiny", 8, "cpu", "float32", 0,
                                                                    "default", "none")
    group = [Case("mlp", "tiny", 8, mode=m) for m in ("train", "eval", "no_grad", "eval_no_grad", "frozen")]
    import random

    before = list(group)
    random.Random("0:1:('mlp', 'tiny', 8, 'cpu', 'float32', 0)").shuffle(before)  # plan.shuffled of gradbench 0.4
    assert shuffled(group, "0:1") == before


def test_a_resumed_sweep_over_seq_lens_skips_what_is_done(tmp_path):
    """Done at seq_len 16 (and a record from before the axes: the toy's 32): only 64 is left."""
    import json

    from gradbench.resume import previous_results
    from gradbench.session import failure_record

    grid = grid_of(models=("transformer",), sizes=("tiny",), seq_lens=(16, 32, 64))
    cases = grid.cases()
    out = tmp_path / "sweep.jsonl"
    done16 = failure_record(cases[0], "r1", "not_applicable", "done").to_json()
    old32 = {k: v for k, v in failure_record(cases[1], "r0", "not_applicable", "done").to_json().items()
             if k not in ("seq_len", "image_size")}
    out.write_text(json.dumps(done16) + "\n" + json.dumps({**old32, "format_version": 5}) + "\n")
    previous = previous_results(str(out), cases, 1, None)
    assert previous.skipped == 2
    batches = Plan(tuple(cases), done=frozenset(previous.done)).first_batches()
    assert [c.seq_len for b in batches for c in b.cases] == [64]
