"""Findings: sentences computed from the records, each naming the records it rests on.

Nothing here is a claim written in advance: a finding appears only where the data has both sides
of the comparison, and its numbers are the data's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..record import case_label
from .tables import UNTRUSTED_MARK, is_untrusted

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



def untrusted_note(*records) -> str:
    """A note for a sentence resting on a timing that is not trusted."""
    return f" ({UNTRUSTED_MARK} timing untrusted)" if any(is_untrusted(r.get("time_trusted")) for r in records) else ""


def _where(r) -> str:
    return case_label(r, omit=("mode", "step"))


def _ratio(record, train, field) -> float | None:
    """record's field over train's, where both were measured (asv --bench may leave one out)."""
    if record is None or train is None:
        return None
    a, b = record.get(field), train.get(field)
    return float(a) / float(b) if pd.notna(a) and pd.notna(b) and b else None


def _used(record, train, memory_words: str, time_words: str) -> str:
    """'0.13x <memory_words> and 0.33x <time_words>', of what was measured; '' when neither was."""
    memory, time = _ratio(record, train, "peak_bytes"), _ratio(record, train, "time_median_s")
    return " and ".join(f"{v:.2f}x {words}" for v, words in ((memory, memory_words), (time, time_words))
                        if v is not None)


def findings(df: pd.DataFrame) -> list[Finding]:
    out: list[Finding] = []
    ok = df[(df["status"] == "ok") & (df["step"] == "forward")]
    for _, part in ok.groupby(WORKLOAD, dropna=False):
        part = part[part["batch_size"] == part["batch_size"].max()]  # the largest batch: where effects are biggest
        modes = {r["mode"]: r for _, r in part.iterrows()}
        train, evalm, nograd, evng = (modes.get(m) for m in ("train", "eval", "no_grad", "eval_no_grad"))
        evng_said = _used(evng, train, "train's peak memory", "its forward time")
        if evng_said:
            line, refs = f"eval_no_grad used {evng_said} on {_where(train)}", [evng, train]
            eval_said = _used(evalm, train, "the memory", "the time")
            if eval_said:
                line += f"; eval alone used {eval_said}"
                refs.append(evalm)
            out.append(Finding(line + "." + untrusted_note(*refs), refs))
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
        frozen = modes.get("frozen")
        frozen_peak, nograd_peak = _ratio(frozen, train, "peak_bytes"), _ratio(nograd, train, "peak_bytes")
        if frozen_peak is not None and nograd_peak is not None:
            out.append(Finding(
                f"requires_grad=False on every parameter (frozen) used {frozen_peak:.2f}x "
                f"train's peak memory, no_grad {nograd_peak:.2f}x, on {_where(frozen)}.",
                [frozen, nograd, train]))
        timed = {m: r for m, r in modes.items() if pd.notna(r.get("time_median_s"))}
        if len(timed) > 2:
            fastest = min(timed.values(), key=lambda r: r["time_median_s"])
            line = f"fastest forward on {_where(fastest)}: {fastest['mode']} ({fastest['time_median_s'] * 1e3:.3g} ms"
            if evng is not None and fastest["mode"] != "eval_no_grad":
                line += f"; eval_no_grad {evng['time_median_s'] * 1e3:.3g} ms"
            refs = [fastest] + ([evng] if evng is not None else [])
            out.append(Finding(line + ")." + untrusted_note(*refs), refs))
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
