"""Compare the same cases across machines, GPUs, torch versions, commits, devices, runs, files or harnesses.

For each case the inputs share, the ratio of median times (other / baseline) with a bootstrap
confidence interval, and the ratio of peak memory. The baseline is the first value of --by in the
order the inputs were given (by harness: gradbench's own timing, if present, then asv, then
pytest-benchmark). Cases present on one side only are counted, per side.

A side's time for a case is the median over its runs (a run: one worker process, i.e. one
``run_id`` and ``repeat``) of each run's median. The interval resamples runs first and then the
samples within each drawn run, so it holds the variation between processes when a side has several
runs (``gradbench run --repeat K``, or several files); with one run per side it knows only the
variation within one process, and says so. Runs whose time is untrusted are left out of a side when
it has trusted ones; a case with only untrusted runs on a side is marked untrusted.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..dataset import HARNESS_ORDER, UNTRUSTED, best_ranked, cases as case_records, per_run
from ..record import case_label
from ..schema import CASE_KEY_FIELDS, IDENTITY_DEFAULTS
from ..units import ratio_text
from .tables import as_text, axis_keys

BY = {"machine": "machine", "gpu": "gpu", "torch": "torch", "commit": "git_commit", "device": "device",
      "run": "run_id", "file": "source_file", "harness": "source", "compile": "compile", "autocast": "autocast"}
RUN_KEY = ["source_file", "run_id", "repeat"]  # one worker process's records
WITHIN = "within-process only"
BETWEEN = "between and within processes"


def side_labels(df: pd.DataFrame, by: str) -> pd.Series:
    column = BY[by]
    values = as_text(df[column], "none")
    return values.str[:12] if by == "commit" else values


def _bootstrap_medians(runs: list[np.ndarray], resamples: int, rng) -> np.ndarray | None:
    """``resamples`` bootstrap values of a side's time: draw runs with replacement, then samples within
    each drawn run; the value is the median over drawn runs of their resampled medians."""
    if not runs or any(len(r) < 3 for r in runs):
        return None
    m = len(runs)
    picks = rng.integers(0, m, (resamples, m))
    medians = np.empty((resamples, m))
    for j, samples in enumerate(runs):
        where = picks == j
        count = int(where.sum())
        if count:
            drawn = samples[rng.integers(0, len(samples), (count, len(samples)))]
            medians[where] = np.median(drawn, axis=1)
    return np.median(medians, axis=1)


def bootstrap_ratio_ci(base: list, other: list, resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """CI of time(other) / time(base). Each side is a list of runs (lists of raw samples), or one run's
    samples as a flat list of numbers."""
    rng = np.random.default_rng(seed)
    sides = []
    for runs in (base, other):
        runs = [runs] if runs and not isinstance(runs[0], (list, tuple, np.ndarray)) else runs
        sides.append(_bootstrap_medians([np.asarray(r, float) for r in runs], resamples, rng))
    if sides[0] is None or sides[1] is None:
        return None
    ratios = sides[1] / sides[0]
    tail = (1 - level) / 2 * 100
    return float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def harnesses_first(df: pd.DataFrame) -> pd.DataFrame:
    """Records ordered by harness (gradbench, asv, pytest-benchmark), so that gradbench's own timing is
    the baseline of a comparison by harness; within a harness, the order they were read in."""
    rank = {name: i for i, name in enumerate(HARNESS_ORDER)}
    return df.sort_values("source", key=lambda s: s.map(lambda v: rank.get(v, len(rank))), kind="stable")


def compare(df: pd.DataFrame, by: str) -> tuple[pd.DataFrame, list[str], dict[str, list[str]]]:
    """(table of shared cases, sides in order, cases present on one side only: their labels, sorted, under
    where they are, 'only on cuda' or, with more than two sides, 'on gradbench, not on asv')."""
    if by not in BY:
        raise ValueError(f"unknown --by {by!r}; valid: {', '.join(BY)}")
    if by == "harness":
        ok = harnesses_first(df)
    elif by in IDENTITY_DEFAULTS:  # eager, or no autocast, is the baseline whatever the input order
        ok = df.sort_values(by, key=lambda s: s.ne(IDENTITY_DEFAULTS[by]), kind="stable")
    else:
        ok = df
    ok = case_records(ok[ok["status"] == "ok"]).copy()
    ok["side"] = side_labels(ok, by)
    sides = list(dict.fromkeys(ok["side"]))
    if len(sides) < 2:
        found = sides[0] if sides else "nothing"
        raise ValueError(f"--by {by} needs inputs that differ in {by}; all ok records have {by} {found!r}")
    key = [k for k in CASE_KEY_FIELDS if k != BY[by]]
    for column in RUN_KEY:
        ok[column] = as_text(ok[column])
    ok = per_run(axis_keys(ok), key + ["side"] + RUN_KEY)  # one record per run and case
    cases = {side: dict(tuple(part.groupby(key, sort=False))) for side, part in ok.groupby("side", sort=False)}
    base_side = sides[0]
    base = cases[base_side]
    rows, only = [], {}
    for side in sides[1:]:
        other = cases[side]
        label = lambda c: case_label(dict(zip(key, c)), omit=(BY[by],))  # noqa: E731
        # with more than two sides, "only on" would be false of a case a third side has too
        on = (lambda a, b: f"only on {a}") if len(sides) == 2 else (lambda a, b: f"on {a}, not on {b}")
        for where, missing in ((on(base_side, side), [c for c in base if c not in other]),
                               (on(side, base_side), [c for c in other if c not in base])):
            if missing:
                only.setdefault(where, set()).update(label(c) for c in missing)
        for case in (c for c in base if c in other):
            rows.append({**dict(zip(key, case)), "baseline": base_side, "other": side,
                         **_case_row(base[case], other[case])})
    return pd.DataFrame(rows), sides, {where: sorted(labels) for where, labels in only.items()}


def _case_row(base: pd.DataFrame, other: pd.DataFrame) -> dict:
    (a, a_rank), (b, b_rank) = best_ranked(base), best_ranked(other)  # a side's runs that count
    a_trusted, b_trusted = a_rank != UNTRUSTED, b_rank != UNTRUSTED  # untimed: nothing to distrust
    a_ms = float(np.median(a["time_median_s"].astype(float))) * 1e3
    b_ms = float(np.median(b["time_median_s"].astype(float))) * 1e3
    ci = bootstrap_ratio_ci([_samples(r) for _, r in a.iterrows()], [_samples(r) for _, r in b.iterrows()])
    a_peak, b_peak = a["peak_bytes"].iloc[-1], b["peak_bytes"].iloc[-1]
    untrusted = [f"{name}: {'; '.join(dict.fromkeys(part['time_distrust'].dropna()))}"
                 for name, part, trusted in (("baseline", a, a_trusted), ("other", b, b_trusted)) if not trusted]
    return {
        "baseline_ms": a_ms, "other_ms": b_ms, "time_ratio": b_ms / a_ms if a_ms else np.nan,
        "ci_low": ci[0] if ci else np.nan, "ci_high": ci[1] if ci else np.nan,
        "baseline_runs": len(a), "other_runs": len(b),
        "interval": (BETWEEN if len(a) > 1 and len(b) > 1 else WITHIN) if ci else "none",
        "trusted": not untrusted, "distrust": " | ".join(untrusted) or None,
        "baseline_peak_bytes": a_peak, "other_peak_bytes": b_peak,
        "peak_ratio": b_peak / a_peak if pd.notna(a_peak) and a_peak and pd.notna(b_peak) else np.nan,
    }


def _samples(row) -> list[float]:
    s = row.get("samples_s")
    return [v for v in s if v is not None] if isinstance(s, (list, tuple, np.ndarray)) else []


def regressions(table: pd.DataFrame, fail_above_pct: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trusted cases slower by more than the threshold with the whole interval beyond it, untrusted
    cases that would otherwise count: listed, never failed on)."""
    if table.empty:
        return table, table
    limit = 1 + fail_above_pct / 100
    beyond = table[table["ci_low"].notna() & (table["ci_low"] > limit)]
    return beyond[beyond["trusted"]], beyond[~beyond["trusted"]]


def interval_kind(table: pd.DataFrame) -> str:
    """One sentence on what the intervals hold, for the header of a comparison."""
    if table.empty:
        return "no shared cases"
    kinds = table["interval"].value_counts()
    if kinds.get("none", 0) == len(table):
        return "no confidence intervals: no raw samples on a side (asv without --record-samples?)"
    if kinds.get(BETWEEN, 0) == len(table):
        return f"95% CI {BETWEEN} (runs resampled, then samples within runs)"
    text = f"95% CI {WITHIN} for {kinds.get(WITHIN, 0)} of {len(table)} cases (one run on a side: " \
           "variation between processes is not in it; measure with --repeat K)"
    if kinds.get(BETWEEN, 0):
        text += f"; {BETWEEN} for {kinds[BETWEEN]}"
    if kinds.get("none", 0):
        text += f"; no interval for {kinds['none']} (no raw samples)"
    return text


def _ratio(value) -> str:
    """A comparison's ratio: three decimals (a gate judges a few percent), more below 0.1 (ratio_text)."""
    return ratio_text(value, decimals=3, suffix="")


def text_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as people read it: one row per case, ratios with their interval."""
    if table.empty:
        return table
    shown = pd.DataFrame({
        "case": [case_label(r, omit=("mode", *[k for k in ("device",) if k not in table])) for r in
                 table.to_dict("records")],
        "mode": table["mode"],
        "vs": table["other"] + " / " + table["baseline"],
        "baseline ms": table["baseline_ms"].map("{:.3f}".format),
        "other ms": table["other_ms"].map("{:.3f}".format),
        "time ratio": table["time_ratio"].map(_ratio),
        "95% CI": [f"[{_ratio(lo)}, {_ratio(hi)}]" if pd.notna(lo) else "(no samples)"
                   for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "runs": table["baseline_runs"].astype(str) + " / " + table["other_runs"].astype(str),
        "trusted": table["trusted"].map({True: "yes", False: "NO"}),
        "peak memory ratio": table["peak_ratio"].map(_ratio),
    })
    return shown.set_index("case")


def draw(df: pd.DataFrame, by: str, out_dir: str) -> list[str]:
    """Forward time per mode, hue = the compared dimension, one panel per workload."""
    from .figures import _save, figure_text, sns

    ok = df[(df["status"] == "ok") & (df["step"] == "forward")].copy()
    if ok.empty:
        return []
    os.makedirs(out_dir, exist_ok=True)
    ok[by] = side_labels(ok, by).map(figure_text)  # a machine's (gpu's, run's) name from the records
    ok["time_ms"] = ok["time_median_s"].astype(float) * 1e3
    shown_elsewhere = ("dtype", "mode", "step", *(["device"] if by == "device" else []))
    ok["workload"] = [figure_text(case_label(r, omit=shown_elsewhere)) for r in ok.to_dict("records")]
    grid = sns.catplot(data=ok, x="mode", y="time_ms", hue=by, col="workload", col_wrap=3, kind="bar",
                       height=3, aspect=1.4, sharey=False, errorbar=None)
    grid.set_axis_labels("", "forward time (ms)")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=45)
    grid.figure.suptitle(f"Forward time by mode, compared by {by}", y=1.02)
    return _save(grid.figure, out_dir, f"compare_by_{by}")


def one_sided_lines(only: dict[str, list[str]]) -> list[str]:
    """One line per side for the cases it alone has, however many: '588 cases only on cuda; first: ...'."""
    return [f"{len(labels)} case{'s' if len(labels) > 1 else ''} {where}; first: {labels[0]}"
            for where, labels in only.items()]  # raw: each renderer escapes them its own way


def print_comparison(table: pd.DataFrame, sides: list, only: dict[str, list[str]], by: str,
                     fail_above: float | None) -> int:
    """The comparison as printed by `gradbench compare`; with ``fail_above``, the gate: 1 when a trusted
    case is slower by more than that percentage with its whole interval beyond, or when no case was on
    both sides or every shared case is untrusted (a gate that judged nothing has not passed), else 0."""
    from .tables import render, terminal_text

    print(f"compared by {by}: baseline {sides[0]!r} vs {', '.join(repr(s) for s in sides[1:])}; "
          f"{len(table)} shared cases (time ratio = other / baseline; {interval_kind(table)})")
    print(render(text_table(table)))
    if only:
        print()
        for line in one_sided_lines(only):
            print(terminal_text(line))  # a side is a machine's (gpu's, torch's, run's) name from the records
    if not table.empty and not table["trusted"].all():
        print(f"\n{int((~table['trusted']).sum())} cases have only untrusted timings on a side (marked NO); "
              "--fail-above does not fail on them")
    if fail_above is None:
        return 0
    if table.empty:
        print(f"\nFAIL: nothing compared: no case is on both sides ({', '.join(repr(s) for s in sides)}), so "
              f"--fail-above {fail_above:g} judged nothing")
        return 1
    judged = bool(table["trusted"].any())
    if judged and (table["interval"] != BETWEEN).any():
        print("\nnote: with one run a side the intervals miss the variation between processes, so this gate "
              "also fails on noise; measure each side with --repeat K (docs: comparing)")
    bad, doubtful = regressions(table, fail_above)
    if not doubtful.empty:
        print(f"\nnot judged: {len(doubtful)} untrusted cases look slower by more than {fail_above:g}%:")
        for (_, row), case in zip(doubtful.iterrows(), text_table(doubtful).index):
            print(f"  {case} {row['mode']}: {terminal_text(row['distrust'])}")
    if not judged:
        print(f"\nFAIL: nothing judged: all {len(table)} shared cases have only untrusted timings on a side "
              f"(contention, or an imprecise median), so --fail-above {fail_above:g} judged nothing; measure again "
              "on a quiet machine")
        return 1
    if not bad.empty:
        print(f"\nFAIL: {len(bad)} cases slower by more than {fail_above:g}% with the whole interval beyond:")
        print(render(text_table(bad)))
        return 1
    print(f"\nOK: no trusted case slower by more than {fail_above:g}% with its whole interval beyond")
    return 0


def write_comparison(df: pd.DataFrame, table: pd.DataFrame, by: str, out_dir: str) -> list[str]:
    """The table as CSV (its text cells inert in a spreadsheet) and the figure into ``out_dir``, each file
    whole or not at all."""
    from ..atomic import write_text
    from .files import csv_text, output_path, output_root

    path = output_path(output_root(out_dir), f"compare_by_{by}", "csv")
    write_text(path, csv_text(table), "table")
    return [path, *draw(df, by, out_dir)]
