"""A/B comparisons (`gradbench ab`): per case the paired ratio with its interval and verdict, the memory
gate, and the rounds over time. The verdicts are ab/verdict.py's, computed here from the ab_trial records
alone, with the gates each comparison ran with: the terminal and the report say the same."""
from __future__ import annotations

import pandas as pd

from ..ab import verdict as v
from ..dataset import ab_trials
from ..record import case_key, case_label
from ..units import human_bytes, ratio_text

VERDICT_MARK = {v.SLOWER: "SLOWER", v.FASTER: "faster", v.SAME: "no change", v.INCONCLUSIVE: "inconclusive",
                v.TOO_FEW: "too few trusted pairs", v.FAILED: "failed", v.NOT_APPLICABLE: "not applicable"}


def _bytes(n: int) -> str:
    """A signed byte difference as people read it, and to the byte."""
    sign = "+" if n > 0 else "-" if n < 0 else ""
    n = abs(n)
    return f"{sign}{n:,} B" if n < 1024 else f"{sign}{human_bytes(n)} ({sign}{n:,} B)"


def memory_text(memory: tuple) -> str:
    """What the memory gate saw: growth with its bytes, what does not repeat, or 'same'."""
    parts = []
    for m in memory:
        if m.grew:
            parts.append(f"{m.metric} GREW {_bytes(m.difference)}")
        elif m.difference:
            parts.append(f"{m.metric} {_bytes(m.difference)}")
        for side, repeats in m.repeats.items():
            if not repeats:
                values = m.base if side == "base" else m.candidate
                parts.append(f"{m.metric} does not repeat on {side} ({min(values):,}..{max(values):,} B)")
    return "; ".join(parts) or ("same to the byte" if memory else "-")


def verdict_rows(trials, cases=None, threshold: float | None = None, memory_threshold: float | None = None):
    """One row per case: (label, CaseVerdict, row dict). ``trials``: one comparison's ab_trial records;
    the gates default to those the comparison recorded."""
    trials = [dict(t) for t in trials]
    if threshold is None:
        threshold = (trials[0].get("ab_fail_above") or 0) / 100 if trials else 0
    if memory_threshold is None:
        memory_threshold = (trials[0].get("ab_fail_memory_above") or 0) / 100 if trials else 0
    by_case: dict[tuple, list] = {}
    for t in trials:
        by_case.setdefault(case_key(t), []).append(t)
    keys = [case_key(c.identity()) for c in cases] if cases is not None else list(by_case)
    rows = []
    for key in keys:
        group = by_case.get(key, [])
        verdict = v.case_verdict(group, threshold, memory_threshold)
        label = case_label(group[0]) if group else str(key)
        t = verdict.time
        bases = [r["time_median_s"] for r in group if r["ab_side"] == "base" and v.undisturbed(r)]
        rows.append((label, verdict, {
            "case": label,
            "base time": f"{v.median(bases) * 1e3:.3g} ms" if bases else "-",
            "candidate / base": ratio_text(t.ratio) if t.ratio is not None else "-",
            "95% interval": f"{t.low:.3f} .. {t.high:.3f}" if t.low is not None else "-",
            "verdict": VERDICT_MARK[t.verdict] + (f" ({'; '.join(f'{s}: {m}' for s, m in verdict.failed.items())})"
                                                  if verdict.failed else ""),
            "pairs (left out)": f"{t.pairs} ({t.left_out})",
            "detectable slowdown": f"{t.detectable:.1%}" if t.detectable is not None else "-",
            "memory": "-" if verdict.failed else memory_text(verdict.memory),
            "gate": "FAILS" if verdict.gate_fails else "passes",
        }))
    return rows


def gate(rows, fail_above: float) -> tuple[int, str]:
    """(exit status, the line that says why): 1 when a case fails the gate, or when no case had enough
    undisturbed rounds to be compared (a gate that compared nothing has not passed); else 0. The command
    and the report both say this."""
    failing = [label for label, verdict, _ in rows if verdict.gate_fails]
    if failing:
        return 1, (f"FAIL: {len(failing)} of {len(rows)} cases fail the gate: " + ", ".join(failing[:5])
                   + (" ..." if len(failing) > 5 else ""))
    if not any(verdict.time.pairs >= v.min_pairs() for _, verdict, _ in rows):
        return 1, (f"FAIL: no case has {v.min_pairs()} trusted pairs, so nothing was compared (a busy machine, or "
                   "failing cases): not a pass")
    return 0, f"pass: no case slower than +{fail_above:g}% or grown in memory"


def verdict_table(rows) -> pd.DataFrame:
    return pd.DataFrame([r for _, _, r in rows]).set_index("case") if rows else pd.DataFrame()


def sides_text(trials) -> list[str]:
    """Per side: revision, commit, interpreter and the torch it ran."""
    lines = []
    for side in v.SIDES:
        mine = [t for t in trials if t["ab_side"] == side]
        if not mine:
            continue
        first = mine[0]
        torches = sorted({t.get("torch") for t in mine if t.get("torch")})
        revision = f"revision {first.get('ab_revision')} ({(first.get('ab_commit') or '')[:12]})" \
            if first.get("ab_revision") else "the working tree"
        lines.append(f"{side}: {revision}, python {first.get('ab_python')}, torch {', '.join(torches) or '?'}")
    return lines


def ab_blocks(df: pd.DataFrame) -> list[tuple]:
    """The report's A/B sections, one per comparison in the records."""
    trials = ab_trials(df)
    if trials.empty:
        return []
    blocks = [("h2", "A/B comparisons")]
    for ab_id, part in trials.groupby("ab_id", sort=False):
        records = [{k: (None if isinstance(x, float) and x != x else x) for k, x in r.items()}
                   for r in part.to_dict("records")]
        rows = verdict_rows(records)
        first = records[0]
        rounds = int(part["ab_round"].max())
        status, _ = gate(rows, first.get("ab_fail_above") or 0)
        failing = sum(1 for _, verdict, _ in rows if verdict.gate_fails)
        heading = "every case passes the gate" if status == 0 else \
            f"{failing} of {len(rows)} cases fail the gate" if failing else "nothing compared: not a pass"
        blocks += [("h3", f"{ab_id}: {heading}"),
                   ("list", sides_text(records)),
                   ("p", f"{rounds} rounds; gates: time +-{first.get('ab_fail_above') or 0:g}%, memory "
                         f"+{first.get('ab_fail_memory_above') or 0:g}%. Each round measured every case still open on "
                         "both sides in fresh processes, in a random order (a case was retired once its verdict was "
                         "settled, from round 6, or a side failed it; 'pairs' counts its rounds), in blocks alternating between the sides; its "
                         "pairs give the round's ratio. The interval is the exact 95% Wilcoxon signed-rank "
                         "(Hodges-Lehmann) interval of the rounds' ratios; rounds timed while other work used the "
                         "machine are left out. 'detectable slowdown': the smallest slowdown this spread would "
                         "have called slower."),
                   ("table", verdict_table(rows))]
    return blocks


def rounds_figure(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Per comparison: each case's paired ratio by round, the gate as a band around 1."""
    from .figures import _save, figure_text, plt

    trials = ab_trials(df)
    if trials.empty:
        return []
    paths = []
    for ab_id, part in trials.groupby("ab_id", sort=False):
        ok = part[part["status"] == "ok"]
        pairs = ok.pivot_table(index=["ab_round"], columns=[ok.apply(lambda r: case_label(r.to_dict()), axis=1),
                                                            "ab_side"], values="time_median_s", aggfunc="first")
        if pairs.empty:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.2))
        threshold = (part["ab_fail_above"].dropna().iloc[0] if part["ab_fail_above"].notna().any() else 0) / 100
        ax.axhspan(1 - threshold, 1 + threshold, color="#e8f3e8", label=f"+-{threshold:.0%} (no change)")
        ax.axhline(1, color="#888", linewidth=0.8)
        for label in dict.fromkeys(c[0] for c in pairs.columns):
            if (label, "base") in pairs and (label, "candidate") in pairs:
                ratio = pairs[(label, "candidate")] / pairs[(label, "base")]
                ax.plot(ratio.index, ratio.values, marker="o", markersize=3, linewidth=1, label=figure_text(label))
        ax.set_xlabel("round")
        ax.set_ylabel("candidate / base time")
        ax.set_title(figure_text(f"A/B {ab_id}: paired ratio per round"))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        paths += _save(fig, out_dir, f"ab-rounds-{ab_id}")
    return paths
