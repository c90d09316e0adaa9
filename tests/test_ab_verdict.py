"""The A/B verdicts from scripted trials (ab/verdict.py): the interval's exact coverage against brute force,
each verdict at the gate's edges, left-out pairs, memory growth and repeats, and what fails the gate."""
import itertools
import math

import pytest

from gradbench.ab import verdict as v


def test_the_signed_rank_distribution_is_exact_against_every_sign_pattern():
    for n in range(1, 9):
        counts = {}
        for signs in itertools.product((0, 1), repeat=n):
            t = sum(rank for rank, s in zip(range(1, n + 1), signs) if s)
            counts[t] = counts.get(t, 0) + 1
        cdf = v._signed_rank_cdf(n)
        acc = 0
        for t in range(n * (n + 1) // 2 + 1):
            acc += counts.get(t, 0)
            assert cdf[t] == pytest.approx(acc / 2 ** n)


def test_six_pairs_are_the_fewest_for_95_percent():
    assert [v.rank_for(n) for n in range(1, 6)] == [None] * 5
    assert v.rank_for(6) == 1 and v.coverage(6, 1) == pytest.approx(1 - 2 / 64)
    assert v.min_pairs() == 6
    for n in (7, 10, 20, 40):
        k = v.rank_for(n)
        assert v.coverage(n, k) >= 0.95 > v.coverage(n, k + 1)


def test_the_normal_approximation_takes_over_smoothly():
    exact = v.rank_for(v.EXACT_UP_TO)
    approx = v.rank_for(v.EXACT_UP_TO + 1)
    n = v.EXACT_UP_TO
    assert abs(approx - exact) < 2 * (n + 1)  # the next n adds n+1 Walsh averages on each side at most


def _ratios(center, spread, n):
    """n ratios symmetric about ``center``, within +-spread."""
    steps = [spread * (2 * i / (n - 1) - 1) for i in range(n)]
    return [center * math.exp(s) for s in steps]


@pytest.mark.parametrize("center, expected", [
    (1.00, v.SAME), (1.12, v.SLOWER), (0.88, v.FASTER), (1.05, v.INCONCLUSIVE), (0.95, v.INCONCLUSIVE)])
def test_each_verdict_from_its_interval(center, expected):
    verdict = v.time_verdict(_ratios(center, 0.02, 12), 0.05)
    assert verdict.verdict == expected
    assert verdict.low < center < verdict.high
    assert verdict.ratio == pytest.approx(center)
    assert verdict.pairs == 12 and verdict.decided == (expected != v.INCONCLUSIVE)


def test_an_interval_wider_than_the_gate_is_inconclusive_even_centred_on_one():
    verdict = v.time_verdict(_ratios(1.0, 0.2, 12), 0.05)
    assert verdict.verdict == v.INCONCLUSIVE and verdict.low < 0.95 and verdict.high > 1.05


def test_fewer_than_six_pairs_give_no_interval():
    verdict = v.time_verdict([1.3] * 5, 0.05, left_out=4)
    assert verdict.verdict == v.TOO_FEW and verdict.low is None and verdict.left_out == 4
    assert v.time_verdict([1.3] * 6, 0.05).verdict == v.SLOWER


def test_one_outlier_round_does_not_move_the_verdict():
    steady = _ratios(1.10, 0.01, 11)
    assert v.time_verdict(steady + [0.5], 0.05).verdict == v.SLOWER
    assert v.time_verdict(_ratios(1.0, 0.01, 11) + [3.0], 0.05).verdict == v.SAME


def test_the_detectable_slowdown_is_the_gate_plus_the_lower_spread():
    verdict = v.time_verdict(_ratios(1.0, 0.02, 12), 0.05)
    assert verdict.detectable == pytest.approx(0.05 + (verdict.ratio - verdict.low))


def trial(side, rnd, samples=None, status="ok", **fields):
    record = dict(ab_side=side, ab_round=rnd, status=status, error=None, samples_s=samples,
                  time_median_s=v.median(samples) if samples else None, cpu_other_share=0.0,
                  cpu_steal_share=0.0, peak_bytes=1000, held_bytes=500, saved_bytes=200)
    record.update(fields)
    return record


def paired(base_s, ratio, rounds, **fields):
    out = []
    for rnd in range(1, rounds + 1):
        out += [trial("base", rnd, [base_s] * 3), trial("candidate", rnd, [base_s * ratio] * 3, **fields)]
    return out


def test_a_round_ratio_is_the_median_of_its_alternated_pairs():
    base = {"samples_s": [1.0, 2.0, 4.0]}
    candidate = {"samples_s": [1.1, 2.4, 4.0]}
    assert v.round_ratio(base, candidate) == pytest.approx(1.1)
    assert v.round_ratio(base, {"samples_s": [1.0]}) is None  # blocks that do not pair up


def test_pairs_timed_while_the_machine_was_busy_are_left_out_and_counted():
    trials = paired(0.01, 1.2, 8)
    for t in trials[:4]:  # rounds 1 and 2
        t["cpu_other_share"] = 0.5
    verdict = v.case_verdict(trials, 0.05, 0.0)
    assert verdict.time.pairs == 6 and verdict.time.left_out == 2
    assert verdict.time.verdict == v.SLOWER and verdict.gate_fails
    assert v.disturbance(trials[0]) and not v.disturbance(trials[-1])


def test_a_busy_wait_share_alone_does_not_leave_a_pair_out():
    trials = paired(0.01, 1.0, 6, cpu_wait_share=0.4)
    assert v.case_verdict(trials, 0.05, 0.0).time.pairs == 6


def test_memory_growth_fails_the_gate_with_its_bytes():
    trials = paired(0.01, 1.0, 6)
    for t in trials:
        if t["ab_side"] == "candidate":
            t["saved_bytes"] = 200 + 4096
    verdict = v.case_verdict(trials, 0.05, 0.0)
    grew = verdict.memory_grew
    assert [m.metric for m in grew] == ["saved_bytes"] and grew[0].difference == 4096
    assert verdict.time.verdict == v.SAME and verdict.gate_fails


def test_the_memory_threshold_is_a_share_of_the_base():
    base, candidate = [1000] * 3, [1049] * 3
    assert not v.memory_verdict("peak_bytes", base, candidate, 0.05).grew
    assert v.memory_verdict("peak_bytes", base, [1051] * 3, 0.05).grew


def test_bytes_that_do_not_repeat_are_reported_and_gated_on_what_is_certain():
    m = v.memory_verdict("peak_bytes", [1000, 1200], [1100, 1100], 0.0)
    assert m.repeats == {"base": False, "candidate": True} and not m.grew  # 1100 is not above the base's 1200
    assert v.memory_verdict("peak_bytes", [1000, 1200], [1300, 1250], 0.0).grew


def test_a_case_not_applicable_on_both_sides_has_that_verdict_and_passes():
    trials = [trial("base", 1, status="not_applicable"), trial("candidate", 1, status="not_applicable")]
    verdict = v.case_verdict(trials, 0.05, 0.0)
    assert verdict.time.verdict == v.NOT_APPLICABLE and not verdict.gate_fails


def test_a_candidate_that_fails_where_the_base_runs_fails_the_gate():
    trials = [trial("base", 1, [0.01]), trial("candidate", 1, status="error", error="RuntimeError: boom")]
    verdict = v.case_verdict(trials, 0.05, 0.0)
    assert verdict.time.verdict == v.FAILED and verdict.candidate_broke and verdict.gate_fails
    assert verdict.failed == {"candidate": "error: RuntimeError: boom"}


def test_a_base_that_fails_alone_is_listed_not_failed_on():
    trials = [trial("base", 1, status="error", error="x"), trial("candidate", 1, [0.01])]
    verdict = v.case_verdict(trials, 0.05, 0.0)
    assert verdict.time.verdict == v.FAILED and not verdict.gate_fails


def test_only_an_unsettled_case_is_open_to_more_rounds():
    verdicts = [v.case_verdict(paired(0.01, r, n), 0.05, 0.0) for r, n in ((1.0, 8), (1.2, 8), (1.0, 3))]
    failed = v.case_verdict([trial("base", 1, status="error", error="x"), trial("candidate", 1, [0.01])], 0.05, 0.0)
    assert [x.time.verdict for x in verdicts + [failed]] == [v.SAME, v.SLOWER, v.TOO_FEW, v.FAILED]
    assert [v.open_to_more_rounds(x) for x in verdicts + [failed]] == [False, False, True, False]


def test_a_crafted_trial_without_its_side_or_round_is_skipped_on_reading(tmp_path):
    import json

    from gradbench.results import read_jsonl

    base = {"format_version": 6, "kind": "ab_trial", "model": "mlp", "size": "tiny", "batch_size": 2,
            "device": "cpu", "dtype": "float32", "mode": "train", "step": "forward", "status": "ok",
            "ab_id": "x", "ab_round": 1, "ab_side": "base"}
    lines = [base, dict(base, ab_side="../../etc"), dict(base, ab_round=None), dict(base, ab_id=None)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    records, warnings = read_jsonl(path)
    assert [r["ab_side"] for r in records] == ["base"] and "3" in " ".join(warnings)
