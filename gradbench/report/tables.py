"""Tables from records: each mode as a ratio to train, and the measured behaviour of every mode.

Tables are pandas DataFrames; ``render`` prints one as aligned text or markdown. Nothing here
measures anything.
"""
from __future__ import annotations

import math

import pandas as pd

from ..modes import MODES

GROUP = ["model", "size", "batch_size", "device", "dtype", "step"]


def ok_records(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def ratio_to_train(df: pd.DataFrame, metric: str, step: str = "forward") -> pd.DataFrame:
    """Rows: model/size/batch/device/dtype; columns: modes; cells: metric / train's metric."""
    ok = ok_records(df)
    ok = ok[ok["step"] == step]
    if ok.empty:
        return pd.DataFrame()
    keys = [k for k in GROUP if k != "step"]
    wide = ok.pivot_table(index=keys, columns="mode", values=metric, aggfunc="last")
    if "train" not in wide.columns:
        return pd.DataFrame()
    ratios = wide.div(wide["train"], axis=0).dropna(how="all")  # rows without a train baseline say nothing
    return ratios[[m for m in MODES if m in ratios.columns]]


def case_label(index) -> str:
    model, size, batch, device, dtype = index
    return f"{model}/{size} b{batch} {device} {dtype}"


def summary_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The run summary: forward time and peak memory of each mode as a ratio to train."""
    out = {}
    for title, metric in (("median time vs train", "time_median_s"), ("peak memory vs train", "peak_bytes")):
        table = ratio_to_train(df, metric)
        if not table.empty:
            table.index = pd.Index([case_label(i) for i in table.index], name="case")
            table.columns.name = None
            out[title] = table.map(lambda v: "-" if pd.isna(v) else f"{v:.2f}x")
    return out


def _yes_no(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "yes" if value else "no"


def human_bytes(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _ops(value) -> str:
    """stochastic_ops as people read them: 'bernoulli_, randn_like', '-' for none, 'n/a' if not observed."""
    if not isinstance(value, (list, tuple)):
        return "n/a"
    return ", ".join(op.split("::")[-1] for op in value) or "-"


def behaviour_table(records: list[dict]) -> pd.DataFrame:
    """The measured 'eval vs no_grad vs requires_grad=False' table, one row per mode of one workload."""
    by_mode = {r["mode"]: r for r in records if r["step"] == "forward"}
    train = by_mode.get("train", {})
    rows = []
    for name, r in by_mode.items():
        mode = MODES[name]
        ok = r["status"] == "ok"

        def ratio(metric):
            base = train.get(metric) if train.get("status") == "ok" else None
            return f"{r[metric] / base:.2f}x" if ok and base else "-"

        rows.append({
            "mode": name,
            "training flag": mode.training,
            "grad mode": mode.grad_mode,
            "requires_grad": mode.trainable,
            "dropout active": _yes_no(r["dropout_active"]) if ok else r["status"],
            "random ops": _ops(r.get("stochastic_ops")) if ok else "-",
            "BN batch stats": _yes_no(r["bn_batch_stats"]) if ok else "-",
            "BN stats updated": _yes_no(r["bn_stats_updated"]) if ok else "-",
            "graph recorded": _yes_no(r["graph_recorded"]) if ok else "-",
            "saved bytes": human_bytes(r["saved_bytes"]) if ok else "-",
            "fast path": _yes_no(r["fastpath"]) if ok else "-",
            "time vs train": ratio("time_median_s"),
            "memory vs train": ratio("peak_bytes"),
        })
    order = {m: i for i, m in enumerate(MODES)}
    return pd.DataFrame(sorted(rows, key=lambda row: order[row["mode"]])).set_index("mode")


def render(table: pd.DataFrame, fmt: str = "table") -> str:
    """Aligned text (``table``) or a GitHub markdown table (``markdown``)."""
    if table.empty:
        return "(no results)"
    if fmt == "markdown":
        index_name = table.index.name or ""
        header = [index_name, *map(str, table.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for idx, row in table.iterrows():
            lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
        return "\n".join(lines)
    return table.to_string()
