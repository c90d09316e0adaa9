"""Findings: sentences computed from the records, each naming the records it rests on.

Nothing here is a claim written in advance: a finding appears only where the data has both sides
of the comparison, and its numbers are the data's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..record import case_label
from ..units import ratio_text
from .tables import is_untrusted

# a workload across its batch sizes; compiled and autocast runs are workloads of their own, never mixed with eager
WORKLOAD = ["model", "size", "device", "dtype", "compile", "autocast"]


@dataclass
class Finding:
    text: str
    rows: list = field(default_factory=list)  # the records it rests on

    @property
    def records(self) -> list[str]:
        """'run RUN_ID: model/size bN device dtype step, modes a, b' per run and case."""
        grouped: dict[tuple, list[str]] = {}
        for r in self.rows:
            key = (r["run_id"], case_label(r, omit=("mode",)))
            if r["mode"] not in grouped.setdefault(key, []):
                grouped[key].append(r["mode"])
        return [f"run {run}: {case}, mode{'s' if len(m) > 1 else ''} {', '.join(m)}" for (run, case), m in grouped.items()]



def _where(r) -> str:
    return case_label(r, omit=("mode", "step"))


def _ratio(record, train, field) -> float | None:
    """record's field over train's, where both were measured (asv --bench may leave one out)."""
    if record is None or train is None:
        return None
    a, b = record.get(field), train.get(field)
    return float(a) / float(b) if pd.notna(a) and pd.notna(b) and b else None


def _trusted_time(record) -> bool:
    return pd.notna(record.get("time_median_s")) and not is_untrusted(record.get("time_trusted"))


SLOWER_THAN_TRAIN = 1.1  # a trusted median's interval is within +-10%: beyond that, slower is not noise


def findings(df: pd.DataFrame) -> list[Finding]:
    """What is particular to a workload (the answer table carries what holds across them): where no_grad
    alone left the forward stochastic, where the transformer fast path ran, where a mode cost more than
    train, which mode was fastest (trusted timings only: an untrusted extreme is never a finding); then
    global state a model changed, and the cases that failed."""
    out: list[Finding] = []
    ok = df[(df["status"] == "ok") & (df["step"] == "forward")]
    fastest: dict[str, list] = {}
    for _, part in ok.groupby(WORKLOAD, dropna=False):
        part = part[part["batch_size"] == part["batch_size"].max()]  # the largest batch: where effects are biggest
        modes = {r["mode"]: r for _, r in part.iterrows()}
        train, nograd = modes.get("train"), modes.get("no_grad")
        if nograd is not None and nograd.get("dropout_active") is True:
            extra = " and updated BatchNorm running statistics" if nograd.get("bn_stats_updated") is True else ""
            diff = nograd.get("max_abs_diff_vs_eval_no_grad")
            diff_text = f" (outputs differ from eval_no_grad by up to {diff:.3g})" if pd.notna(diff) else ""
            ops = nograd.get("stochastic_ops")
            ops_text = f", random numbers drawn by {', '.join(ops)}" if isinstance(ops, list) and ops else ""
            out.append(Finding(f"no_grad alone left the forward stochastic (Dropout active{ops_text}){extra} on "
                               f"{_where(nograd)}{diff_text}.", [nograd]))
        fast = [m for m, r in modes.items() if r.get("fastpath") is True]
        if fast and any(r.get("fastpath") is False for r in modes.values()):
            out.append(Finding(f"PyTorch's transformer fast path ran only in {', '.join(sorted(fast))} on "
                               f"{_where(next(iter(modes.values())))}.", [modes[m] for m in sorted(fast)]))
        for name, r in modes.items():
            if name == "train":
                continue
            peak = _ratio(r, train, "peak_bytes")
            if peak is not None and peak > 1:
                out.append(Finding(f"{name} needed more peak memory than train on {_where(r)}: "
                                   f"{ratio_text(peak)} train's.", [r, train]))
            time = _ratio(r, train, "time_median_s")
            if time is not None and time > SLOWER_THAN_TRAIN and _trusted_time(r) and _trusted_time(train):
                out.append(Finding(f"{name} took longer than train on {_where(r)}: {ratio_text(time)} train's "
                                   "forward time (both timings trusted).", [r, train]))
        timed = [r for r in modes.values() if _trusted_time(r)]
        if len(timed) > 2:
            best = min(timed, key=lambda r: r["time_median_s"])
            fastest.setdefault(best["mode"], []).append(best)
    if fastest:
        judged = sum(len(v) for v in fastest.values())
        parts = [f"{mode} on {', '.join(_where(r) for r in rows)}"
                 for mode, rows in sorted(fastest.items(), key=lambda item: -len(item[1]))]
        out.append(Finding(f"Fastest forward at the largest batch, of the modes with a trusted timing (at least 3; "
                           f"{judged} workload{'s' if judged > 1 else ''}): " + "; ".join(parts) + ".",
                           [r for rows in fastest.values() for r in rows]))
    warned = df[df["global_state_warning"].notna()] if "global_state_warning" in df else df.iloc[:0]
    for warning, part in warned.groupby("global_state_warning"):
        out.append(Finding(f"{len(part)} case(s) record that a model changed global torch state (undone before "
                           f"the next case): {warning[:200]}", [r for _, r in part.head(6).iterrows()]))
    failed = df[~df["status"].isin(["ok", "not_applicable"])]
    for (status, error), part in failed.groupby(["status", failed["error"].fillna("").str.split("\n").str[0]]):
        cases = sorted({case_label(r) for _, r in part.iterrows()})
        shown = ", ".join(cases[:4]) + (f" and {len(cases) - 4} more" if len(cases) > 4 else "")
        out.append(Finding(f"{len(part)} case(s) ended with status {status}: {error[:140]} ({shown}).",
                           [r for _, r in part.head(6).iterrows()]))
    return out
