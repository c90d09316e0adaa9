"""Findings: sentences computed from the records, each naming the records it rests on.

Nothing here is a claim written in advance: a finding appears only where the data has both sides
of the comparison, and its numbers are the data's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..record import case_label
from .tables import UNTRUSTED_MARK, is_untrusted

WORKLOAD = ["model", "size", "device", "dtype"]


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



def _doubt(*records) -> str:
    """A note for a sentence resting on a timing that is not trusted."""
    return f" ({UNTRUSTED_MARK} timing untrusted)" if any(is_untrusted(r.get("time_trusted")) for r in records) else ""


def _where(r) -> str:
    return case_label(r, omit=("mode", "step"))


def findings(df: pd.DataFrame) -> list[Finding]:
    out: list[Finding] = []
    ok = df[(df["status"] == "ok") & (df["step"] == "forward")]
    for _, part in ok.groupby(WORKLOAD):
        part = part[part["batch_size"] == part["batch_size"].max()]  # the largest batch: where effects are biggest
        modes = {r["mode"]: r for _, r in part.iterrows()}
        train, evalm, nograd, evng = (modes.get(m) for m in ("train", "eval", "no_grad", "eval_no_grad"))
        if train is not None and evng is not None and train["peak_bytes"]:
            line = (f"eval_no_grad used {evng['peak_bytes'] / train['peak_bytes']:.2f}x train's peak memory "
                    f"and {evng['time_median_s'] / train['time_median_s']:.2f}x its forward time on {_where(train)}")
            refs = [evng, train]
            if evalm is not None:
                line += (f"; eval alone used {evalm['peak_bytes'] / train['peak_bytes']:.2f}x the memory "
                         f"and {evalm['time_median_s'] / train['time_median_s']:.2f}x the time")
                refs.append(evalm)
            out.append(Finding(line + "." + _doubt(*refs), refs))
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
        if frozen is not None and nograd is not None and train is not None and train["peak_bytes"]:
            out.append(Finding(
                f"requires_grad=False on every parameter (frozen) used {frozen['peak_bytes'] / train['peak_bytes']:.2f}x "
                f"train's peak memory, no_grad {nograd['peak_bytes'] / train['peak_bytes']:.2f}x, on {_where(frozen)}.",
                [frozen, nograd, train]))
        timed = {m: r for m, r in modes.items() if pd.notna(r.get("time_median_s"))}
        if len(timed) > 2:
            fastest = min(timed.values(), key=lambda r: r["time_median_s"])
            line = f"fastest forward on {_where(fastest)}: {fastest['mode']} ({fastest['time_median_s'] * 1e3:.3g} ms"
            if evng is not None and fastest["mode"] != "eval_no_grad":
                line += f"; eval_no_grad {evng['time_median_s'] * 1e3:.3g} ms"
            refs = [fastest] + ([evng] if evng is not None else [])
            out.append(Finding(line + ")." + _doubt(*refs), refs))
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
