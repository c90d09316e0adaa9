"""Findings: sentences computed from the records, each naming the records it rests on.

Nothing here is a claim written in advance: a finding appears only where the data has both sides
of the comparison, and its numbers are the data's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..record import case_label
from ..units import ratio_text
from .tables import is_untrusted, listed

# a workload across its batch sizes; compiled and autocast runs are workloads of their own, never mixed with eager
WORKLOAD = ["model", "size", "seq_len", "image_size", "device", "dtype", "compile", "autocast"]


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


def _places(rows) -> str:
    """'cnn/tiny b8 cpu float32' for one workload; 'N workloads: a, b, ...' for several."""
    names = [_where(r) for r in rows]
    return names[0] if len(names) == 1 else f"{len(names)} workloads: {', '.join(names)}"


def _stochastic_no_grad(rows: list) -> Finding:
    """no_grad alone with Dropout still on, across the workloads where it was seen."""
    ops = sorted({op for r in rows if isinstance(r.get("stochastic_ops"), list) for op in r["stochastic_ops"]})
    text = f"no_grad alone left the forward stochastic (Dropout active" + (
        f", random numbers drawn by {', '.join(ops)}" if ops else "") + f") on {_places(rows)}"
    updated = [r for r in rows if r.get("bn_stats_updated") is True]
    if updated and len(updated) == len(rows):
        text += "; it updated BatchNorm running statistics" + (" in every one" if len(rows) > 1 else "")
    elif updated:
        text += f"; it updated BatchNorm running statistics on {', '.join(_where(r) for r in updated)}"
    diffs = [float(r["max_abs_diff_vs_eval_no_grad"]) for r in rows if pd.notna(r.get("max_abs_diff_vs_eval_no_grad"))]
    if diffs:
        text += (f" (outputs differ from eval_no_grad by up to {max(diffs):.3g}" +
                 (f"; the least of the workloads' largest differences is {min(diffs):.3g}" if len(diffs) > 1 else "") + ")")
    return Finding(text + ".", rows)


SLOWER_THAN_TRAIN = 1.1  # a trusted median's interval is within +-10%: beyond that, slower is not noise


def findings(df: pd.DataFrame) -> list[Finding]:
    """What is particular to a workload (the answer table carries what holds across them): where no_grad
    alone left the forward stochastic, where the transformer fast path ran, where a mode cost more than
    train, which mode was fastest (trusted timings only: an untrusted extreme is never a finding); then
    global state a model changed, and the cases that failed."""
    out: list[Finding] = []
    ok = df[(df["status"] == "ok") & (df["step"] == "forward")]
    fastest: dict[str, list] = {}
    stochastic, fastpath = [], {}  # one finding each across workloads, not one per workload
    for _, part in ok.groupby(WORKLOAD, dropna=False):
        part = part[part["batch_size"] == part["batch_size"].max()]  # the largest batch: where effects are biggest
        modes = {r["mode"]: r for _, r in part.iterrows()}
        train, nograd = modes.get("train"), modes.get("no_grad")
        if nograd is not None and nograd.get("dropout_active") is True:
            stochastic.append(nograd)
        fast = [m for m, r in modes.items() if r.get("fastpath") is True]
        if fast and any(r.get("fastpath") is False for r in modes.values()):
            fastpath.setdefault(tuple(sorted(fast)), []).append([modes[m] for m in sorted(fast)])
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
    if stochastic:
        out.append(_stochastic_no_grad(stochastic))
    for fast, rows in fastpath.items():
        out.append(Finding(f"PyTorch's transformer fast path ran only in {', '.join(fast)} on "
                           f"{_places([r[0] for r in rows])}.", [r for group in rows for r in group]))
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
        out.append(Finding(f"{len(part)} case(s) ended with status {status}: {error[:140]} ({listed(cases)}).",
                           [r for _, r in part.head(6).iterrows()]))
    return out
