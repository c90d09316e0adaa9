"""The report's capacity section: `gradbench capacity --out` records back into its answer, table and figure.

Each record is one batch size a capacity search measured (source "capacity"); the answer is re-derived
from them (the largest batch, the batch after it, the fitted line), so the report says nothing the
records do not hold.
"""
from __future__ import annotations

import pandas as pd

from ..capacity import capacity_table, small_line
from ..dataset import CAPACITY_CASE as CASE, capacity_curve, capacity_searches
from ..record import case_label
from .tables import axis_keys


def _needed(record) -> int | None:
    if record["status"] != "ok" or pd.isna(record["held_bytes"]) or pd.isna(record["peak_bytes"]):
        return None
    return int(record["held_bytes"] + record["peak_bytes"])


def capacity_rows(df: pd.DataFrame) -> list[dict]:
    """One answer per case, mode and budget (the newest search of each), as `capacity --format json` gives it."""
    rows = []
    keys = [*CASE, "mode", "memory_budget_bytes"]
    for key, part in axis_keys(capacity_searches(df)).groupby(keys, sort=False):
        # every record holds its batch's memory, the timed one at the answer too (reading keeps one a batch)
        measured = {int(r["batch_size"]): _needed(r) for _, r in part.iterrows()}
        best = int(part["capacity_batch_size"].iloc[-1])
        line = small_line(measured)
        timed = part[part["time_median_s"].notna() & (part["batch_size"] == best)]
        row = dict(zip(keys, key), memory_budget_bytes=int(key[-1]), max_batch_size=best,
                   **{k: int(v) or None for k, v in zip(keys, key) if k in ("seq_len", "image_size")},
                   fixed_bytes=line[0] if line else None, bytes_per_sample=line[1] if line else None,
                   bytes_at_max=measured.get(best), bytes_at_next=measured.get(best + 1), samples_per_s=None,
                   time_trusted=None, capped=best > 0 and (best + 1) not in measured, error=None,
                   measured_batches=sorted(measured))
        if not timed.empty and float(timed["time_median_s"].iloc[-1]) > 0:  # reading skips such a record too
            row.update(samples_per_s=best / float(timed["time_median_s"].iloc[-1]),
                       time_trusted=timed["time_trusted"].iloc[-1])
        if best == 0:
            row["error"] = "not even the smallest batch measured fits"
        rows.append(row)
    return rows


def capacity_blocks(df: pd.DataFrame) -> list[tuple]:
    rows = capacity_rows(df)
    if not rows:
        return []
    budgets = sorted({r["memory_budget_bytes"] for r in rows})
    text = ("The largest batch each mode fits in the memory budget "
            f"({', '.join(f'{b / 2**20:.0f} MiB' for b in budgets)}): what a case needs is held_bytes + "
            "peak_bytes, measured at that batch (it fits) and at the next (it does not); bytes per sample and "
            "fixed bytes are the line through the small batches (1 to 8, or 2 to 16) that predicted it; "
            "'x train' is the ratio of largest batches; samples/s (with --time) is timed at the largest batch.")
    return [("h2", "Capacity: the largest batch in a memory budget"), ("p", text),
            ("table", capacity_table(rows))]


def capacity_figure(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Memory needed against batch size per mode, the budget as a line, each mode's largest batch marked."""
    from .figures import PALETTE, _save, figure_text, plt

    records = capacity_searches(df)
    records = records[records["status"] == "ok"]
    records = records.assign(needed_mib=(pd.to_numeric(records["held_bytes"]) + pd.to_numeric(records["peak_bytes"]))
                             / 2**20)
    records = records[records["needed_mib"] > 0]  # on a log scale; a record that has no held or peak has no point
    if records.empty:
        return []
    panels = list(axis_keys(records).groupby(CASE, sort=False))
    columns = min(3, len(panels))
    rows_ = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows_, columns, figsize=(5.2 * columns, 3.8 * rows_), squeeze=False)
    for ax, (case, part) in zip(axes.flat, panels):
        for mode, points in part.groupby("mode", sort=False):
            points = capacity_curve(points)
            ax.plot(points["batch_size"], points["needed_mib"], "o-", color=PALETTE.get(mode), label=figure_text(mode),
                    markersize=3, linewidth=1)
            best = int(points["capacity_batch_size"].iloc[-1])
            at = points[points["batch_size"] == best]
            if not at.empty:
                ax.plot(best, at["needed_mib"].iloc[0], "*", color=PALETTE.get(mode), markersize=12)
        for budget in part["memory_budget_bytes"].dropna().unique():
            ax.axhline(budget / 2**20, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("held + peak (MiB)")
        ax.set_title(figure_text(case_label({**dict(zip(CASE, case)), "batch_size": 0}, omit=("batch_size", "mode"))),
                     fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Capacity: memory needed vs batch size (dashed: the budget; star: each mode's largest batch)")
    fig.tight_layout()
    return _save(fig, out_dir, "capacity")
