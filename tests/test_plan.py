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
