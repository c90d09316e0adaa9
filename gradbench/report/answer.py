"""The answer to the question gradbench asks, across every workload in the records: per mode, its forward time
and peak memory as a ratio to train (median and range over workloads), what autograd saved, and what the mode
was observed to switch (Dropout, BatchNorm statistics, graph, transformer fast path); and one sentence per mode
written from those numbers.

A workload is one model/size/batch/device/dtype with its compile and autocast setting (GROUP_FIELDS); which
record stands for each of its cases is dataset.py's choice, the ratios are the ratio tables' (tables.py). An
untrusted timing (the mode's or train's) never enters a time range: the row says how many were left out. The
report renders the result; the README and the docs can print the same table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import dataset
from ..modes import MODES
from ..schema import GROUP_FIELDS
from ..units import human_bytes, ratio_text
from .tables import missing_from_ratios, ratio_to_train, unjudged_ratios, untrusted_ratios

# (column, field, words for True, words for False): the behaviour observed in each workload's forward
BEHAVIOUR = (
    ("Dropout active", "dropout_active", "yes", "no"),
    ("BatchNorm statistics used", "bn_batch_stats", "batch", "running"),
    ("BatchNorm statistics updated", "bn_stats_updated", "yes", "no"),
    ("graph recorded", "graph_recorded", "yes", "no"),
    ("transformer fast path", "fastpath", "yes", "no"),
)


@dataclass
class Answer:
    table: pd.DataFrame  # one row per mode (forward), index: mode; text cells
    sentences: list[str] = field(default_factory=list)  # one per mode, from the table's numbers
    notes: list[str] = field(default_factory=list)  # what the ranges rest on, and what was left out
    workloads: int = 0  # workloads with a forward record


@dataclass
class Spread:
    """Values over workloads: median and range."""
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    def text(self, show=ratio_text) -> str:
        """'0.32x (0.13-0.53x)': median (min-max); one value alone."""
        if not self.values:
            return "-"
        span = self.span(show)
        return span if "\u2013" not in span else f"{self.median(show)} ({span})"

    def span(self, show=ratio_text) -> str:
        """'0.13-0.53x': the range alone, the unit once (a ratio's); one value alone."""
        s = pd.Series(self.values, dtype=float)
        low, high = show(s.min()), show(s.max())
        if low == high:
            return low
        if show is ratio_text:
            low = ratio_text(s.min(), suffix="")
        return f"{low}\u2013{high}"

    def median(self, show=ratio_text) -> str:
        return show(pd.Series(self.values, dtype=float).median())


def _workload_records(forward: pd.DataFrame) -> dict[tuple, dict[str, dict]]:
    """workload -> mode -> its ok record (the last of a workload's records of one mode: dataset.py has chosen
    one per case and file)."""
    out: dict[tuple, dict[str, dict]] = {}
    for r in forward[forward["status"] == "ok"].to_dict("records"):
        key = tuple("-" if pd.isna(r[k]) else r[k] for k in GROUP_FIELDS)
        out.setdefault(key, {})[r["mode"]] = r
    return out


def _observed(values: list) -> dict:
    """How often a behaviour flag was True and False, and in how many workloads it was not applicable."""
    seen = [bool(v) for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))]
    return {"true": sum(seen), "false": len(seen) - sum(seen), "na": len(values) - len(seen)}


def _observed_text(count: dict, yes: str, no: str) -> str:
    """'yes in 6/6', 'running in 4/4 (2 n/a)', 'yes in 2/6, no in 4/6', 'n/a' (no such layer anywhere)."""
    judged = count["true"] + count["false"]
    if not judged:
        return "n/a"
    parts = [f"{words} in {n}/{judged}" for words, n in ((yes, count["true"]), (no, count["false"])) if n]
    return ", ".join(parts) + (f" ({count['na']} n/a)" if count["na"] else "")


def _saved_text(values: list) -> str:
    saved = [float(v) for v in values if pd.notna(v)]
    if not saved:
        return "-"
    if all(v == 0 for v in saved):
        return f"0 in {len(saved)}/{len(saved)}"
    return Spread(saved).text(human_bytes)


def answer(df: pd.DataFrame) -> Answer:
    """The answer table, its sentences and notes, from records as read (``gradbench.load``) or already chosen:
    dataset.py picks one record per case (repeats combined, one harness and commit per workload)."""
    df = dataset.one_source(dataset.combined(dataset.cases(df)))
    forward = df[df["step"] == "forward"] if not df.empty else df
    if forward.empty:
        return Answer(pd.DataFrame())
    by_workload = _workload_records(forward)
    if not by_workload:  # errors or not_applicable only: nothing was measured
        return Answer(pd.DataFrame())
    memory = ratio_to_train(df, "peak_bytes")
    time = ratio_to_train(df, "time_median_s")
    doubt, unjudged = ((flags(df).reindex(index=time.index, columns=time.columns, fill_value=False)
                        if not time.empty else time) for flags in (untrusted_ratios, unjudged_ratios))
    rows, sentences = [], []
    for mode in (m for m in MODES if any(m in modes for modes in by_workload.values())):
        records = [modes[mode] for modes in by_workload.values() if mode in modes]
        peak = Spread(memory[mode].dropna().tolist() if mode in memory else [])
        timed = time[mode].dropna() if mode in time else pd.Series(dtype=float)
        untrusted = doubt[mode].reindex(timed.index).fillna(False).astype(bool) if len(timed) else timed.astype(bool)
        trusted = Spread(timed[~untrusted].tolist())
        left_out = int(untrusted.sum())
        never_judged = int(unjudged[mode].reindex(timed[~untrusted].index).fillna(False).astype(bool).sum()) \
            if len(timed) else 0
        behaviour = {column: _observed([r.get(name) for r in records]) for column, name, _, _ in BEHAVIOUR}
        baseline = mode == "train"
        beside_train = sum(1 for modes in by_workload.values() if mode in modes and "train" in modes)
        rows.append({
            "mode": mode,
            "workloads": str(len(records)) + (f" ({beside_train} with train)" if beside_train < len(records)
                                              and not baseline else ""),
            "peak memory vs train": "1 (baseline)" if baseline else peak.text(),
            "time vs train": "1 (baseline)" if baseline else trusted.text(),
            "time from": "-" if baseline or not len(timed) else
            f"{trusted.n} of {len(timed)}" + (f"; {left_out} untrusted left out" if left_out else "")
            + (f"; {never_judged} not judged" if never_judged else ""),
            "saved for backward": _saved_text([r.get("saved_bytes") for r in records]),
            **{column: _observed_text(behaviour[column], yes, no) for column, _, yes, no in BEHAVIOUR},
        })
        sentences.append(_sentence(mode, len(records), peak, trusted, left_out, len(timed), behaviour,
                                   [r.get("saved_bytes") for r in records], beside_train))
    table = pd.DataFrame(rows).set_index("mode")
    notes = [f"Over {len(by_workload)} workload{'s' if len(by_workload) != 1 else ''} with a forward measured "
             "(model/size/batch/device/dtype, each compile and autocast setting apart): ratios to train are the "
             "median (min\u2013max) of the per-workload ratios, over the workloads where train ran too; a time "
             "ratio whose timing (the mode's or train's) is untrusted is left out of every time range; 'time from' "
             "counts those left out, and those kept whose contention was never judged (asv, pytest-benchmark). "
             "Behaviour: in how many workloads the forward did it, 'n/a' where the "
             "model has no such layer (Dropout: 'no' wherever the forward was not stochastic, with a Dropout layer "
             "or without one). Saved for backward: bytes autograd kept (median (min\u2013max))."]
    notes += missing_from_ratios(df)
    return Answer(table, sentences, notes, len(by_workload))


def _all_or_some(count: dict, all_true: str, all_false: str, noun: str | None = None) -> str | None:
    """One behaviour in words: what it did everywhere, or in how many workloads (those with ``noun``, where
    the flag is n/a without it); None where never observed."""
    judged = count["true"] + count["false"]
    if not judged:
        return None
    if count["false"] == 0:
        return all_true
    if count["true"] == 0:
        return all_false
    return f"{all_true} in {count['true']} of {judged} workloads" + (f" with {noun}" if noun else "")


def _sentence(mode: str, workloads: int, peak: Spread, trusted: Spread, left_out: int, timed: int,
              behaviour: dict, saved: list, beside_train: int = 0) -> str:
    """'eval_no_grad: 0.13-0.53x train's peak memory (median 0.32x) and 0.38-0.85x its time (median 0.50x);
    Dropout off, BatchNorm uses running statistics and leaves them unchanged, no graph.' From the numbers."""
    said = []
    if mode == "train":
        said.append(f"the baseline, in {workloads} workload{'s' if workloads != 1 else ''}")
    else:
        if peak.n:
            said.append(f"{peak.span()} train's peak memory"
                        + (f" (median {peak.median()}, {peak.n} workloads)" if peak.n > 1 else " (1 workload)"))
        if trusted.n:
            whose = "its" if said else "train's"  # 'its' only after "train's peak memory"
            said.append(f"{trusted.span()} {whose} time"
                        + (f" (median {trusted.median()}, {trusted.n} trusted timings" if trusted.n > 1
                           else " (1 trusted timing")
                        + (f"; {left_out} untrusted left out)" if left_out else ")"))
        elif timed:
            said.append(f"time not judged: all {timed} of its timings or train's are untrusted")
    head = f"{mode}: " + (" and ".join(said) if said else "no ratio to train (" + (
        "train did not run beside it" if not beside_train else "neither time nor peak memory measured in both") + ")")
    words = [w for w in (
        # stochastic or not, observed: false (not n/a) where a model has no Dropout, so no "workloads with Dropout"
        _all_or_some(behaviour["Dropout active"], "Dropout on", "Dropout off"),
        _bn_words(behaviour["BatchNorm statistics used"], behaviour["BatchNorm statistics updated"]),
        _all_or_some(behaviour["graph recorded"], "graph recorded", "no graph", "a forward"),
        _all_or_some(behaviour["transformer fast path"], "transformer fast path taken", "no transformer fast path",
                     "transformer layers"),
        _saved_words(saved),
    ) if w]
    return head + ("; " + ", ".join(words) if words else "") + "."


def _bn_words(used: dict, updated: dict) -> str | None:
    stats = _all_or_some(used, "BatchNorm uses batch statistics", "BatchNorm uses running statistics", "BatchNorm")
    if stats is None:
        return None
    change = _all_or_some(updated, "updates them", "leaves them unchanged", "BatchNorm")
    return stats + (f" and {change}" if change else "")


def _saved_words(values: list) -> str | None:
    saved = [float(v) for v in values if pd.notna(v)]
    if not saved:
        return None
    if all(v == 0 for v in saved):
        return "nothing saved for backward"
    spread = Spread(saved)
    return f"{spread.span(human_bytes)} saved for backward" + (f" (median {spread.median(human_bytes)})"
                                                               if spread.n > 1 else "")
