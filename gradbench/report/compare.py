"""Compare the same cases across machines, GPUs, torch versions, commits or devices.

For each case the inputs share, the ratio of median times (other / baseline) with a bootstrap
confidence interval from the raw samples, and the ratio of peak memory. The baseline is the
first value of --by in the order the inputs were given. Cases present on one side only are listed.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..record import CASE_KEY_FIELDS

BY = {"machine": "machine", "gpu": "gpu", "torch": "torch", "commit": "git_commit", "device": "device"}


def side_labels(df: pd.DataFrame, by: str) -> pd.Series:
    column = BY[by]
    values = df[column].astype(object).where(df[column].notna(), "none")
    return values.astype(str).str[:12] if by == "commit" else values.astype(str)


def bootstrap_ratio_ci(base: list[float], other: list[float], resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """CI of median(other) / median(base) by resampling both sets of raw samples."""
    if not base or not other or len(base) < 3 or len(other) < 3:
        return None
    rng = np.random.default_rng(seed)
    a, b = np.asarray(base, float), np.asarray(other, float)
    med_a = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    med_b = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    ratios = med_b / med_a
    tail = (1 - level) / 2 * 100
    return float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def compare(df: pd.DataFrame, by: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(table of shared cases, sides in order, cases present on one side only)."""
    if by not in BY:
        raise ValueError(f"unknown --by {by!r}; valid: {', '.join(BY)}")
    ok = df[df["status"] == "ok"].copy()
    ok["side"] = side_labels(ok, by)
    sides = list(dict.fromkeys(ok["side"]))
    if len(sides) < 2:
        found = sides[0] if sides else "nothing"
        raise ValueError(f"--by {by} needs inputs that differ in {by}; all ok records have {by} {found!r}")
    key = [k for k in CASE_KEY_FIELDS if k != BY[by]]
    ok = ok.drop_duplicates(key + ["side"], keep="last")
    tables = {side: part.set_index(key) for side, part in ok.groupby("side")}
    base_side = sides[0]
    base = tables[base_side]
    rows, only = [], []
    for side in sides[1:]:
        other = tables[side]
        shared = base.index.intersection(other.index)
        for case in base.index.difference(other.index):
            only.append(f"only on {base_side}: " + " ".join(map(str, case)))
        for case in other.index.difference(base.index):
            only.append(f"only on {side}: " + " ".join(map(str, case)))
        for case in shared:
            a, b = base.loc[case], other.loc[case]
            ratio = b["time_median_s"] / a["time_median_s"] if a["time_median_s"] else np.nan
            ci = bootstrap_ratio_ci(_samples(a), _samples(b))
            peak_ratio = (b["peak_bytes"] / a["peak_bytes"]) if pd.notna(a.get("peak_bytes")) and \
                a.get("peak_bytes") and pd.notna(b.get("peak_bytes")) else np.nan
            rows.append({
                **dict(zip(key, case)), "baseline": base_side, "other": side,
                "baseline_ms": a["time_median_s"] * 1e3, "other_ms": b["time_median_s"] * 1e3,
                "time_ratio": ratio, "ci_low": ci[0] if ci else np.nan, "ci_high": ci[1] if ci else np.nan,
                "baseline_peak_bytes": a.get("peak_bytes"), "other_peak_bytes": b.get("peak_bytes"),
                "peak_ratio": peak_ratio,
            })
    return pd.DataFrame(rows), sides, sorted(set(only))


def _samples(row) -> list[float]:
    s = row.get("samples_s")
    return list(s) if isinstance(s, (list, tuple, np.ndarray)) else []


def regressions(table: pd.DataFrame, fail_above_pct: float) -> pd.DataFrame:
    """Cases slower by more than the threshold with the whole confidence interval beyond it."""
    if table.empty:
        return table
    limit = 1 + fail_above_pct / 100
    return table[table["ci_low"].notna() & (table["ci_low"] > limit)]


def text_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as people read it: one row per case, ratios with their interval."""
    if table.empty:
        return table
    shown = pd.DataFrame({
        "case": table["model"].astype(str) + "/" + table["size"].astype(str) + " b" + table["batch_size"].astype(str)
        + " " + table.get("device", pd.Series("", index=table.index)).astype(str) + " " + table["dtype"].astype(str)
        + " " + table["step"].astype(str),
        "mode": table["mode"],
        "vs": table["other"] + " / " + table["baseline"],
        "baseline ms": table["baseline_ms"].map("{:.3f}".format),
        "other ms": table["other_ms"].map("{:.3f}".format),
        "time ratio": table["time_ratio"].map("{:.3f}".format),
        "95% CI": [f"[{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else "(no samples)"
                   for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "peak memory ratio": table["peak_ratio"].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}"),
    })
    return shown.set_index("case")


def draw(df: pd.DataFrame, by: str, out_dir: str) -> list[str]:
    """Forward time per mode, hue = the compared dimension, one panel per workload."""
    from .figures import _save, sns

    ok = df[(df["status"] == "ok") & (df["step"] == "forward")].copy()
    if ok.empty:
        return []
    os.makedirs(out_dir, exist_ok=True)
    ok[by] = side_labels(ok, by)
    ok["time_ms"] = ok["time_median_s"].astype(float) * 1e3
    ok["workload"] = ok["model"].astype(str) + "/" + ok["size"].astype(str) + " b" + ok["batch_size"].astype(str)
    if by != "device":
        ok["workload"] += " " + ok["device"].astype(str)
    grid = sns.catplot(data=ok, x="mode", y="time_ms", hue=by, col="workload", col_wrap=3, kind="bar",
                       height=3, aspect=1.4, sharey=False, errorbar=None)
    grid.set_axis_labels("", "forward time (ms)")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=45)
    grid.figure.suptitle(f"Forward time by mode, compared by {by}", y=1.02)
    return _save(grid.figure, out_dir, f"compare_by_{by}")
