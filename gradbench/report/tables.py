"""Tables from records: each mode as a ratio to train, and the measured behaviour of every mode.

Tables are pandas DataFrames; ``render`` prints one as aligned text or markdown. Nothing here
measures anything.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from ..dataset import combined
from ..modes import MODES
from ..record import case_label
from ..schema import GROUP_FIELDS, INPUT_AXES
from ..text import terminal_text
from ..units import human_bytes, ratio_text

GROUP = [*GROUP_FIELDS, "step"]
UNTRUSTED_MARK = "\u2020"  # dagger, after a time that is not trusted
UNTRUSTED_LEGEND = f"{UNTRUSTED_MARK}: the timing is untrusted (contention while it ran, or an imprecise median)"


def ok_records(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def is_untrusted(value) -> bool:
    """time_trusted is False (null: not judged, e.g. asv or pytest-benchmark)."""
    return value is False or (isinstance(value, (bool, np.bool_)) and not value)


def as_text(values, blank: str = "-"):
    """A column or frame as text, a null as ``blank``: keys that a NaN (never equal to itself) cannot split."""
    return values.astype(object).where(values.notna(), blank).astype(str)


WORKLOAD_KEYS = list(GROUP_FIELDS)  # GROUP less the step


def axis_keys(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a null seq_len or image_size (the model takes no such input) as 0, so that pandas keys (pivots,
    groupby) keep its rows; case_label shows 0 as nothing, as it shows a null."""
    return df.assign(**{k: df[k].fillna(0).astype("int64") if k in df else 0 for k in INPUT_AXES})


def _by_mode(df: pd.DataFrame, values, step: str, aggfunc: str) -> pd.DataFrame:
    """Rows: model/size/batch/device/dtype of ok records of ``step``, and the machine that measured them
    (level ``machine``); columns: modes; empty without train. ``values``: a column name, or a function of those
    records giving the column to spread."""
    ok = ok_records(df)
    ok = ok[ok["step"] == step]
    if ok.empty:
        return pd.DataFrame()
    if callable(values):
        ok = ok.assign(_value=values(ok))
        values = "_value"
    machine = ok["machine"] if "machine" in ok else pd.Series(None, index=ok.index, dtype=object)
    ok = axis_keys(ok.assign(_machine=as_text(machine)))
    wide = ok.pivot_table(index=[*WORKLOAD_KEYS, "_machine"], columns="mode", values=values, aggfunc=aggfunc)
    return wide if "train" in wide.columns else pd.DataFrame()


def ratio_to_train(df: pd.DataFrame, metric: str, step: str = "forward") -> pd.DataFrame:
    """Rows: model/size/batch/device/dtype; columns: modes; cells: metric / train's metric. Several machines'
    files of one workload (`gradbench report a.jsonl b.jsonl`): the ratio is taken within each machine, then the
    median over machines, never one machine's mode over another's train."""
    wide = _by_mode(df, metric, step, "median")
    if wide.empty:
        return wide
    ratios = wide.div(wide["train"], axis=0).groupby(level=WORKLOAD_KEYS).median()
    ratios = ratios.dropna(how="all")  # rows without a train baseline say nothing
    return ratios[[m for m in MODES if m in ratios.columns]]


def workload_label(index) -> str:
    """A by-mode table's row index (GROUP less step) as the one case label, mode and step omitted."""
    return case_label(dict(zip(GROUP_FIELDS, index)), omit=("mode", "step"))


def untrusted_ratios(df: pd.DataFrame, step: str = "forward") -> pd.DataFrame:
    """Like ratio_to_train's table: True where the mode's or train's time is untrusted."""
    return _either_flagged(df, lambda ok: [is_untrusted(v) for v in ok["time_trusted"]], step)


def unjudged_ratios(df: pd.DataFrame, step: str = "forward") -> pd.DataFrame:
    """Like ratio_to_train's table: True where the mode's or train's time was never judged (time_trusted null:
    asv and pytest-benchmark measure no contention)."""
    return _either_flagged(df, lambda ok: ok["time_trusted"].isna().tolist(), step)


def _either_flagged(df: pd.DataFrame, flag, step: str) -> pd.DataFrame:
    """True where ``flag`` (a function of the ok records) holds for the mode's record or train's."""
    wide = _by_mode(df, flag, step, "any")
    if wide.empty:
        return wide
    doubt = wide.fillna(False).astype(bool) | wide["train"].fillna(False).astype(bool).values[:, None]
    return doubt.groupby(level=WORKLOAD_KEYS).any()  # a median over machines rests on every machine's ratio


def summary_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The run summary: forward time and peak memory of each mode as a ratio to train; a time ratio
    resting on an untrusted timing carries the mark."""
    df = combined(df)  # a --repeat run's processes as one
    out = {}
    for title, metric in (("median time vs train", "time_median_s"), ("peak memory vs train", "peak_bytes")):
        table = ratio_to_train(df, metric)
        if table.empty:
            continue
        text = table.map(ratio_text)
        if metric == "time_median_s":
            marks = untrusted_ratios(df).reindex(index=table.index, columns=table.columns, fill_value=False)
            text = text.where(~(marks.fillna(False).astype(bool) & table.notna()), text + UNTRUSTED_MARK)
        text.index = pd.Index([workload_label(i) for i in table.index], name="case")
        text.columns.name = None
        out[title] = text
    return out


def failure_reason(record) -> str:
    """A failed or not_applicable record's reason as a table's note gives it: its status and the first line of
    its error, less the parenthesised detail that differs per model (PyTorch's words with the input's shape),
    so that one reason groups every case it stopped."""
    error = str(record.get("error") or "").split("\n")[0].split(" (")[0].strip()
    return f"{record['status']}: {error[:200]}" if error else str(record["status"])


def missing_from_ratios(df: pd.DataFrame, step: str = "forward") -> list[str]:
    """Why rows and cells of the ratio tables are missing, one line per reason: a workload whose train did not
    complete has no row (nothing to divide by), a mode that did not complete has '-' in its row. Without it a
    row (the mlp with BatchNorm at batch 1, not_applicable in train) vanishes with no word why."""
    rows: dict[str, list[str]] = {}
    cells: dict[str, list[str]] = {}
    part_of_step = combined(df)
    part_of_step = part_of_step[part_of_step["step"] == step]
    for _, part in part_of_step.groupby(list(GROUP_FIELDS), dropna=False, sort=False):
        by_mode = {r["mode"]: r for r in part.to_dict("records")}
        label = case_label(next(iter(by_mode.values())), omit=("mode", "step"))
        train = by_mode.get("train")
        if train is None:
            rows.setdefault("train was not measured", []).append(label)
        elif train["status"] != "ok":
            rows.setdefault(f"train {failure_reason(train)}", []).append(label)
        else:
            for name in (m for m in MODES if m in by_mode and by_mode[m]["status"] != "ok"):
                cells.setdefault(failure_reason(by_mode[name]), []).append(f"{label} {name}")
    return ([f"No row for {listed(labels)}: {why}." for why, labels in rows.items()]
            + [f"'-' for {listed(labels)}: {why}." for why, labels in cells.items()])


def listed(labels: list[str], shown: int = 4) -> str:
    """'a, b, c, d and 3 more': a list of cases short enough for a sentence."""
    return ", ".join(labels[:shown]) + (f" and {len(labels) - shown} more" if len(labels) > shown else "")


def _yes_no(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "yes" if value else "no"


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
            if not (ok and base):
                return "-"
            doubt = metric == "time_median_s" and (is_untrusted(r.get("time_trusted")) or
                                                   is_untrusted(train.get("time_trusted")))
            return ratio_text(r[metric] / base) + (UNTRUSTED_MARK if doubt else "")

        rows.append({
            "mode": name,
            "training flag": "as built" if mode.training is None else mode.training,
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


# '*', '`' and '~' mark emphasis, code and strikethrough anywhere; '_' only where it is not inside a word
# (CommonMark: 'eval_no_grad' has no emphasis, so it stays as people type it)
MARKDOWN_MARKS = re.compile(r"[*`~]|(?<![^\W_])_|_(?![^\W_])")


def markdown_text(text, cell: bool = False) -> str:
    """Text from a record or the command line, inert in markdown as report.html's is in HTML: no raw HTML
    (an error message's '</table><script>') nor autolink ('<http://...>'), no entity, link or image, no
    emphasis or code span, no line break; in a table ``cell``, no column bar either; control and bidi
    characters shown escaped (terminal_text: report.md is read with cat too)."""
    text = terminal_text(" ".join(str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")))
    text = text.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("](", "]\\(").replace("][", "]\\[")  # [text](url), ![alt](src), [text][ref]
    text = MARKDOWN_MARKS.sub(lambda m: "\\" + m.group(), text)
    return text.replace("|", "\\|") if cell else text


def render(table: pd.DataFrame, fmt: str = "table") -> str:
    """Aligned text (``table``, text cells terminal_text) or a GitHub markdown table (``markdown``, every cell
    markdown_text)."""
    if table.empty:
        return "(no results)"
    if fmt == "markdown":
        header = [table.index.name or "", *table.columns]
        lines = ["| " + " | ".join(markdown_text(h, cell=True) for h in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        for idx, row in table.iterrows():
            lines.append("| " + " | ".join(markdown_text(v, cell=True) for v in [idx, *row.tolist()]) + " |")
        return "\n".join(lines)
    return terminal_table(table).to_string()


def terminal_table(table: pd.DataFrame) -> pd.DataFrame:
    """A new ``table`` whose text cells, index and column names are terminal_text (the caller's is left as it
    was); numbers keep their dtype, and so their format."""
    inert = lambda v: terminal_text(v) if isinstance(v, str) else v  # noqa: E731
    table = table.rename(index=inert, columns=inert)
    if isinstance(table.index.name, str):
        table.index.name = inert(table.index.name)
    for i in range(table.shape[1]):
        if not pd.api.types.is_numeric_dtype(table.iloc[:, i]):
            table.iloc[:, i] = table.iloc[:, i].map(inert)
    return table
