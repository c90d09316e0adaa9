"""The A/B verdicts, from trials alone: pure arithmetic that the command and the report share.

Time. Each round gives one paired ratio per case, candidate / base: the two sides timed the case in short
blocks, alternating (which side first drawn for each pair of blocks), and the round's ratio is the median
of the blocks' pairwise ratios. Pairs taken some 50 ms apart cancel what shifts the whole machine for
seconds at a time (on the 2-core VM gradbench is developed on, a small MLP's whole trials, a few hundred
milliseconds each, varied by 7% between neighbours; alternated blocks agreed within 2%, measured
2026-12-05); fresh processes each round bring each side's own state (memory layout, thread placement) into
the sample.
The interval is the exact Wilcoxon signed-rank interval (Hodges-Lehmann) of the log paired ratios: the
Walsh averages (r_i + r_j) / 2, i <= j, ranked, and [W_(k), W_(N+1-k)] with k from the exact distribution of
the signed-rank statistic; the estimate is their median. Why this and not a bootstrap: its coverage is exact
at any n (a percentile bootstrap undercovers at the 6 to 20 rounds an A/B runs); it needs the ratios to be
symmetric about their centre, which holds exactly when nothing changed, because the order of each pair's
sides is drawn at random (the two sides are exchangeable), and near enough under a shift; a round hit by a
burst moves a few Walsh averages, not the interval (it tolerates 29% of outliers); and it is narrower than
the sign test's interval (on 24 cases with a 10% slowdown, 20 rounds each: 20 called slower against 18, measured
2026-12-05). Its price: at least 6 pairs for 95% ([min, max] of 6 covers 96.9%; of 5 only 93.8%).

A case is slower when its whole interval lies above 1 + threshold, faster when below 1 - threshold, no
change when inside [1 - threshold, 1 + threshold]; otherwise inconclusive. A round's pair is used only when
the machine was undisturbed while its blocks were timed (contention, measure/trust.py; a block's own
precision does not count here: the rounds are the sample); the others are left out and counted.

Memory. Peak, held and saved bytes repeat to the byte within a side on CPU and CUDA alike; a metric
grows when the candidate's smallest value exceeds the base's largest by more than the memory threshold
(0: any byte), so a side whose bytes vary (reported as not repeating) can still be gated on what is certain.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

LEVEL = 0.95
MEMORY_FIELDS = ("peak_bytes", "held_bytes", "saved_bytes")
SLOWER, FASTER, SAME, INCONCLUSIVE, TOO_FEW, FAILED, NOT_APPLICABLE = (
    "slower", "faster", "no change", "inconclusive", "too few trusted pairs", "failed", "not applicable")
SIDES = ("base", "candidate")


@functools.lru_cache(maxsize=None)
def _signed_rank_cdf(n: int) -> list[float]:
    """P(T <= t) for t = 0 .. n(n+1)/2, T the signed-rank statistic of n values under symmetry (exact)."""
    top = n * (n + 1) // 2
    counts = [1] + [0] * top
    for r in range(1, n + 1):
        for t in range(top, r - 1, -1):
            counts[t] += counts[t - r]
    total, acc, cdf = 2 ** n, 0, []
    for c in counts:
        acc += c
        cdf.append(acc / total)
    return cdf


EXACT_UP_TO = 200  # pairs; beyond, the signed-rank statistic's normal approximation (error < 0.1% there)


def rank_for(n: int, level: float = LEVEL) -> int | None:
    """k such that [W_(k), W_(N+1-k)] of the N = n(n+1)/2 Walsh averages covers the centre with probability
    >= level; None when n is too small for any k (n < 6 at 95%)."""
    tail = (1 - level) / 2
    if n > EXACT_UP_TO:
        mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        from statistics import NormalDist

        k = int(math.floor(mean + NormalDist().inv_cdf(tail) * sd))
        return max(k, 1)
    cdf = _signed_rank_cdf(n)
    k = 0
    while k < len(cdf) and cdf[k] <= tail:  # P(T <= k) <= tail: W_(k+1) is a bound
        k += 1
    return k or None


def min_pairs(level: float = LEVEL) -> int:
    """The fewest pairs with an interval at ``level``."""
    n = 1
    while rank_for(n, level) is None:
        n += 1
    return n


def coverage(n: int, k: int) -> float:
    """The exact coverage of [W_(k), W_(N+1-k)] under symmetry."""
    if n > EXACT_UP_TO:
        return LEVEL
    return 1 - 2 * _signed_rank_cdf(n)[k - 1]


def walsh_averages(logs: list[float]) -> list[float]:
    return sorted((logs[i] + logs[j]) / 2 for i in range(len(logs)) for j in range(i, len(logs)))


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


@dataclass(frozen=True)
class TimeVerdict:
    verdict: str
    pairs: int  # pairs used (both trials undisturbed)
    left_out: int  # pairs left out: a trial was disturbed (contention)
    ratio: float | None = None  # the Hodges-Lehmann estimate of the paired ratio, candidate / base
    low: float | None = None
    high: float | None = None
    coverage: float | None = None  # the interval's exact coverage
    detectable: float | None = None  # the smallest slowdown (fraction) that this spread would have called slower

    @property
    def decided(self) -> bool:
        return self.verdict in (SLOWER, FASTER, SAME)


def time_verdict(ratios: list[float], threshold: float, left_out: int = 0, level: float = LEVEL) -> TimeVerdict:
    """The verdict on paired ratios (candidate / base, one per round) against +-threshold (a fraction)."""
    n = len(ratios)
    k = rank_for(n, level)
    if k is None:
        return TimeVerdict(TOO_FEW, n, left_out, median(ratios) if ratios else None)
    walsh = walsh_averages([math.log(r) for r in ratios])
    low, high, mid = math.exp(walsh[k - 1]), math.exp(walsh[len(walsh) - k]), math.exp(median(walsh))
    if low > 1 + threshold:
        verdict = SLOWER
    elif high < 1 - threshold:
        verdict = FASTER
    elif low >= 1 - threshold and high <= 1 + threshold:
        verdict = SAME
    else:
        verdict = INCONCLUSIVE
    # a true slowdown d moves the whole interval by d (in ratio terms, to first order): it is called slower
    # once low + d > 1 + threshold, i.e. d > threshold + (mid - low)
    detectable = threshold + (mid - low)
    return TimeVerdict(verdict, n, left_out, mid, low, high, coverage(n, k), detectable)


@dataclass(frozen=True)
class MemoryVerdict:
    metric: str
    base: tuple[int, ...]
    candidate: tuple[int, ...]
    grew: bool
    repeats: dict = field(default_factory=dict)  # side -> whether its values repeat to the byte

    @property
    def difference(self) -> int | None:
        """Candidate minus base, bytes (medians where a side does not repeat)."""
        if not self.base or not self.candidate:
            return None
        return int(median(list(self.candidate)) - median(list(self.base)))


def memory_verdict(metric: str, base: list[int], candidate: list[int], threshold: float) -> MemoryVerdict:
    """``threshold``: a fraction of the base's bytes; 0 fails on any byte more."""
    base_t, cand_t = tuple(int(v) for v in base), tuple(int(v) for v in candidate)
    repeats = {side: len(set(values)) <= 1 for side, values in zip(SIDES, (base_t, cand_t)) if values}
    grew = bool(base_t and cand_t) and min(cand_t) > max(base_t) * (1 + threshold)
    return MemoryVerdict(metric, base_t, cand_t, grew, repeats)


# What disturbs a pair: other work on the machine (other processes, the hypervisor's steal, another process on
# the GPU, a throttled GPU), by measure/trust.py's limits. Not the wait share: while two workers alternate,
# each one's threads wait now and then for the other's to leave the CPUs (11-16% of pairs on the 2-core VM,
# measured), which slows both blocks of a pair alike.
DISTURBANCES = ("cpu_other_share", "cpu_steal_share", "gpu_other_processes", "gpu_throttle_reasons")


def disturbance(trial: dict) -> list[str]:
    """Why the trial's pair was disturbed (empty: it was not)."""
    from ..measure.contention import Contention
    from ..measure.trust import distrust_reasons

    return distrust_reasons(None, True, Contention(**{n: trial.get(n) for n in DISTURBANCES}))


def undisturbed(trial: dict) -> bool:
    """The trial ran ok and its blocks were timed without other work on the machine."""
    return trial.get("status") == "ok" and trial.get("time_median_s") is not None and not disturbance(trial)


@dataclass(frozen=True)
class CaseVerdict:
    """One case's verdict: time, memory, and why it has none."""

    time: TimeVerdict
    memory: tuple[MemoryVerdict, ...]
    failed: dict  # side -> the first error message of a trial that failed (not_applicable is no failure)
    trials: dict  # side -> number of trials
    ok: dict = field(default_factory=dict)  # side -> number of trials that ran ok

    @property
    def memory_grew(self) -> list[MemoryVerdict]:
        return [m for m in self.memory if m.grew]

    @property
    def gate_fails(self) -> bool:
        """Exit 1 for this case: trusted and slower beyond the threshold, memory grew, or the candidate
        fails where the base runs."""
        return self.time.verdict == SLOWER or bool(self.memory_grew) or self.candidate_broke

    broke: int = 0  # rounds in which the candidate failed (or was not applicable) where the base ran ok

    @property
    def candidate_broke(self) -> bool:
        return self.broke > 0


def round_ratio(base: dict, candidate: dict) -> float | None:
    """The median of the pairwise ratios of a round's alternated blocks (samples_s, in the round's order)."""
    b, c = base.get("samples_s") or [], candidate.get("samples_s") or []
    pairs = [y / x for x, y in zip(b, c) if x and x > 0 and y and y > 0]
    return median(pairs) if pairs and len(b) == len(c) else None


def round_ratios(trials: list[dict]) -> tuple[list[float], int]:
    """(one ratio per round that timed both sides undisturbed, rounds left out because the machine was
    disturbed while they were timed)."""
    by_round: dict[int, dict[str, dict]] = {}
    for t in trials:
        if t.get("status") == "ok" and t.get("samples_s"):
            by_round.setdefault(t["ab_round"], {})[t["ab_side"]] = t
    ratios, left_out = [], 0
    for rnd in sorted(by_round):
        pair = by_round[rnd]
        if len(pair) < 2:
            continue
        ratio = round_ratio(pair["base"], pair["candidate"])
        if ratio is None:
            continue
        if undisturbed(pair["base"]) and undisturbed(pair["candidate"]):
            ratios.append(ratio)
        else:
            left_out += 1
    return ratios, left_out


def case_verdict(trials: list[dict], threshold: float, memory_threshold: float, level: float = LEVEL) -> CaseVerdict:
    """``trials``: one case's ab_trial records of both sides, with ab_side and ab_round."""
    failed: dict[str, str] = {}
    counts = {side: 0 for side in SIDES}
    statuses = set()
    for t in trials:
        side = t["ab_side"]
        counts[side] += 1
        statuses.add(t.get("status"))
        if t.get("status") not in ("ok", "not_applicable") and side not in failed:
            failed[side] = f"{t.get('status')}: {t.get('error') or ''}".strip().rstrip(":")
    ratios, left_out = round_ratios(trials)
    time = time_verdict(ratios, threshold, left_out, level)
    if statuses == {"not_applicable"}:
        time = TimeVerdict(NOT_APPLICABLE, 0, 0)
    elif not ratios and (failed or "ok" not in statuses):
        time = TimeVerdict(FAILED, 0, left_out)
    memory = []
    for metric in MEMORY_FIELDS:
        values = {side: [t[metric] for t in trials if t["ab_side"] == side and t.get("status") == "ok"
                         and t.get(metric) is not None] for side in SIDES}
        if values["base"] or values["candidate"]:
            memory.append(memory_verdict(metric, values["base"], values["candidate"], memory_threshold))
    ok = {side: sum(1 for t in trials if t["ab_side"] == side and t.get("status") == "ok") for side in SIDES}
    by_round: dict[int, dict[str, str]] = {}
    for t in trials:
        by_round.setdefault(t["ab_round"], {})[t["ab_side"]] = t.get("status")
    broke = sum(1 for r in by_round.values() if r.get("base") == "ok" and r.get("candidate") not in ("ok", None))
    for t in trials:  # a candidate not applicable where the base runs is a change of its own
        if t["ab_side"] == "candidate" and t.get("status") == "not_applicable" and by_round[t["ab_round"]].get(
                "base") == "ok":
            failed.setdefault("candidate", f"not_applicable: {t.get('error') or ''}".rstrip(": "))
    if broke and time.verdict == TOO_FEW and not ratios:
        time = TimeVerdict(FAILED, 0, left_out)
    return CaseVerdict(time, tuple(memory), failed, counts, ok, broke)


def open_to_more_rounds(case_verdict) -> bool:
    """More rounds could still settle this case's time verdict: not settled yet, and no trial of either side
    failed (a case that crashed, timed out or stopped applying on one side has its verdict: more rounds would
    fail again, at the cost of a crash or a --timeout each)."""
    return case_verdict.time.verdict in (INCONCLUSIVE, TOO_FEW) and not case_verdict.failed
