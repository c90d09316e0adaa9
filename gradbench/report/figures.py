"""Figures (PNG and SVG) drawn with seaborn from the records DataFrame.

Each mode keeps one colour in every figure, so a reader learns the legend once. A figure that shows an untrusted
timing marks it with the tables' dagger, and says so in its title.
"""
from __future__ import annotations

import hashlib
import os

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..atomic import replaced  # noqa: E402
from ..dataset import one_source  # noqa: E402
from ..modes import MODES  # noqa: E402
from ..record import case_label  # noqa: E402
from ..schema import IDENTITY_DEFAULTS, INPUT_AXES  # noqa: E402
from ..text import terminal_text  # noqa: E402
from .files import output_path  # noqa: E402
from ..units import ratio_text  # noqa: E402
from .tables import (UNTRUSTED_MARK, axis_keys, is_untrusted, ratio_to_train, untrusted_ratios,  # noqa: E402
                     workload_label)

PALETTE = dict(zip(MODES, sns.color_palette("tab10", len(MODES))))
MODE_ORDER = list(MODES)
FIGURE_TEXT_MAX = 60


def figure_text(text) -> str:
    """``text`` from a record as matplotlib is given it (title, legend, tick or facet label): control characters
    shown escaped (terminal_text), every '$' escaped (two start mathtext, which raises on what it cannot parse),
    at most FIGURE_TEXT_MAX characters (a 5000-character machine name left the axes no room: 'left cannot be >=
    right'). One cut short ends in a hash of the whole, so that two names stay two."""
    shown = terminal_text(text).replace("$", r"\$")
    if len(shown) <= FIGURE_TEXT_MAX:
        return shown
    digest = hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{shown[:FIGURE_TEXT_MAX - len(digest) - 1]}~{digest}"


def figure_values(df: pd.DataFrame, columns) -> pd.DataFrame:
    """``df`` with the text values of ``columns`` as figure_text shows them (numbers keep their order)."""
    shown = lambda v: figure_text(v) if isinstance(v, str) else v  # noqa: E731
    return df.assign(**{c: df[c].map(shown) for c in columns})


def _save(fig, out_dir: str, name: str) -> list[str]:
    """The figure as PNG and SVG in ``out_dir`` (files.output_path), each written whole or not at all
    (atomic.replaced)."""
    paths = []
    try:
        for ext in ("png", "svg"):
            path = output_path(out_dir, name, ext)  # a name holds a device and dtype from the records
            with replaced(path, "figure") as temporary:
                fig.savefig(temporary, dpi=110, bbox_inches="tight", format=ext)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def _modes_in(df: pd.DataFrame) -> list[str]:
    return [m for m in MODE_ORDER if m in set(df["mode"])]


def _ok_forward(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & (df["step"] == "forward")]


def _label(df: pd.DataFrame) -> pd.Series:
    return df["model"].astype(str) + "/" + df["size"].astype(str)


def sized_with_axes(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a workload's input axis in its size, as the case text writes it ('base s128', '50 224px'), so
    that a figure's facets (model x size) keep two sequence lengths apart."""
    axes = [" ".join(case_label(r, omit=("model", "batch_size", "device", "dtype", "mode", "step")).split())
            for r in df[["model", "size", "batch_size", *INPUT_AXES]].to_dict("records")] if len(df) else []
    return df.assign(size=[f"{size} {axis}" if axis else size for size, axis in zip(df["size"], axes)]) \
        if any(axes) else df


def _samples_long(df: pd.DataFrame) -> pd.DataFrame:
    """One row per raw timing sample (the median alone where a source kept no samples)."""
    rows = df.copy()
    rows["sample_s"] = [s if isinstance(s, list) and s else [m] for s, m in zip(rows["samples_s"], rows["time_median_s"])]
    rows = rows.explode("sample_s")
    rows["sample_ms"] = rows["sample_s"].astype(float) * 1e3
    return rows


def _tidy_axes(grid, batch_sizes, log_y: bool) -> None:
    """Ticks at the batch sizes actually measured, plain numbers instead of 2x10^0."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in grid.axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(sorted(batch_sizes))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        if log_y:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(NullFormatter())


def _eager_first(group: tuple) -> tuple:
    """A (device, dtype, compile, autocast) group's place: eager and no autocast before their variants."""
    (device, dtype, *chosen), _ = group
    return device, dtype, *((v != IDENTITY_DEFAULTS[k], v) for k, v in zip(IDENTITY_DEFAULTS, chosen))


UNTRUSTED_NOTE = f"{UNTRUSTED_MARK}: timing untrusted"


def _mark_untrusted(grid, part: pd.DataFrame, y: str) -> bool:
    """A dagger beside each point whose timing is untrusted, in its mode's colour; whether there was one."""
    marked = part[[is_untrusted(v) for v in part["time_trusted"]]] if "time_trusted" in part else part.iloc[:0]
    points = marked.groupby(["model", "size", "mode", "batch_size"], sort=False)[y].median()
    for (model, size, mode, batch), value in points.items():
        ax = grid.axes_dict.get((model, size), grid.axes_dict.get(f"{model}/{size}"))
        if ax is not None and pd.notna(value):
            ax.annotate(UNTRUSTED_MARK, (batch, value), xytext=(3, 3), textcoords="offset points",
                        color=PALETTE.get(mode, "black"), fontsize=9, fontweight="bold")
    return not points.empty


def _vs_batch(df: pd.DataFrame, out_dir: str, name: str, y: str, ylabel: str, title: str, log_y: bool,
              timing: bool = False, **line_kws) -> list[str]:
    """One figure per device, dtype and compile/autocast setting: y against batch size, hue = mode, facets =
    model x size (a compiled run's lines are never drawn into the eager ones). ``timing``: y is a time, and a
    point from an untrusted timing carries the dagger."""
    paths = []
    settings = [*IDENTITY_DEFAULTS]
    measured = df[df[y].notna()]  # asv --bench: a field may be absent
    for (device, dtype, *chosen), part in sorted(measured.groupby(["device", "dtype", *settings]), key=_eager_first):
        part = sized_with_axes(part)
        shown = figure_values(part, ["model", "size"])
        pairs = set(zip(shown["model"], shown["size"]))
        if len(pairs) == shown["model"].nunique() * shown["size"].nunique():  # model x size: a panel for each
            facets = dict(row="model", col="size")
        else:  # families with sizes of their own (resnet 50, bert base): one panel per model/size, no empty ones
            shown = shown.assign(case=shown["model"].astype(str) + "/" + shown["size"].astype(str))
            facets = dict(col="case", col_wrap=min(4, len(pairs)))
        grid = sns.relplot(
            data=shown, x="batch_size", y=y, hue="mode", hue_order=_modes_in(part), palette=PALETTE, kind="line",
            marker="o", height=2.6, aspect=1.3, facet_kws={"sharey": False}, **facets, **line_kws,
        )
        _tidy_axes(grid, part["batch_size"].unique(), log_y=log_y)
        grid.set_axis_labels("batch size", ylabel)
        changed = [(k, v) for k, v in zip(settings, chosen) if v != IDENTITY_DEFAULTS[k]]
        setting = ", ".join(figure_text(v) for v in [device, dtype, *(f"{k}={v}" for k, v in changed)])
        marked = timing and _mark_untrusted(grid, shown, y)
        grid.figure.suptitle(f"{title} ({setting})" + (f"; {UNTRUSTED_NOTE}" if marked else ""), y=1.02)
        paths += _save(grid.figure, out_dir, "_".join([name, device, dtype, *(f"{k}-{v}" for k, v in changed)]))
    return paths


def latency_vs_batch(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Median forward latency; error bars span the middle half (IQR) of the raw samples."""
    return _vs_batch(_samples_long(_ok_forward(df)), out_dir, "latency_vs_batch", "sample_ms", "forward latency (ms)",
                     "Forward latency vs batch size, bars: IQR of samples", log_y=True, timing=True,
                     estimator="median", errorbar=("pi", 50), err_style="bars")


def memory_vs_batch(df: pd.DataFrame, out_dir: str) -> list[str]:
    ok = _ok_forward(df).copy()
    ok["peak_mib"] = ok["peak_bytes"].astype(float) / 2**20
    return _vs_batch(ok, out_dir, "memory_vs_batch", "peak_mib", "peak memory above start (MiB)",
                     "Forward peak memory vs batch size", log_y=False)


def ratio_heatmaps(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Each mode's forward time and peak memory as a ratio to train, one row per case."""
    panels = [(table, title) for table, title in ((ratio_to_train(df, "time_median_s"), "time / train"),
                                                  (ratio_to_train(df, "peak_bytes"), "peak memory / train"))
              if not table.empty]  # asv --bench may have measured only one of them
    if not panels:
        return []
    index = panels[0][0].index
    for table, _ in panels[1:]:
        index = index.union(table.index, sort=False)
    labels = [figure_text(workload_label(i)) for i in index]
    height = 2.4 + 0.28 * len(labels)  # the mode names under the panels and the title above need room too
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), height), sharey=True, squeeze=False,
                             layout="constrained")  # lays out the title too, which tight_layout overlapped
    marked = False
    for ax, (table, title) in zip(axes[0], panels):
        table = table.reindex(index)
        text = table.map(lambda v: ratio_text(v, suffix="") if pd.notna(v) else "")
        if title.startswith("time"):  # a ratio resting on an untrusted timing carries the tables' mark
            doubt = untrusted_ratios(df).reindex(index=table.index, columns=table.columns, fill_value=False)
            doubt = doubt.fillna(False).astype(bool) & table.notna()
            text = text.where(~doubt, text + UNTRUSTED_MARK)
            marked = marked or bool(doubt.to_numpy().any())
        sns.heatmap(table.astype(float), ax=ax, annot=text.to_numpy(), fmt="", cmap="RdYlGn_r", center=1.0, vmin=0,
                    vmax=2, cbar=False, yticklabels=labels, annot_kws={"size": 7})
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=90)  # seaborn turns them only where they collide, panel by panel
        ax.set_xlabel("mode")
        ax.set_ylabel("")
    fig.suptitle("Forward: each mode as a ratio to train (lower is cheaper)"
                 + (f"; {UNTRUSTED_NOTE}" if marked else ""))
    return _save(fig, out_dir, "ratio_to_train")


def saved_bytes_by_mode(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Bytes autograd keeps for backward, at each model's largest batch size."""
    ok = _ok_forward(df).copy()
    ok = ok[ok["saved_bytes"].notna()]
    if ok.empty:
        return []
    largest = axis_keys(ok).groupby(["model", "size", *INPUT_AXES, "device", *IDENTITY_DEFAULTS])["batch_size"] \
        .transform("max")
    ok = ok[ok["batch_size"] == largest]
    ok["case"] = [figure_text(case_label(r, omit=("dtype", "mode", "step"))) for r in ok.to_dict("records")]
    ok["saved_mib"] = ok["saved_bytes"].astype(float) / 2**20
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * ok["case"].nunique() + 3), 4))
    sns.barplot(data=ok, x="case", y="saved_mib", hue="mode", hue_order=_modes_in(ok), palette=PALETTE, ax=ax,
                errorbar=None)
    ax.set_ylabel("saved for backward (MiB)")
    ax.set_xlabel("")
    ax.set_title("Activations autograd keeps for backward, by mode (largest batch)")
    ax.tick_params(axis="x", rotation=30)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1))
    return _save(fig, out_dir, "saved_bytes_by_mode")


ONE_SAMPLE = f"{UNTRUSTED_MARK} one sample (asv --quick): one call, not a timing"
UNTRUSTED_TIMING = f"{UNTRUSTED_MARK} untrusted timing"


def asv_history(df: pd.DataFrame, out_dir: str) -> list[str]:
    """asv results across commits: forward time per mode, one panel per model/size/batch/device."""
    asv = df[(df.get("source") == "asv") & (df["step"] == "forward") & df["time_median_s"].notna()].copy()
    if asv.empty or asv["git_commit"].nunique() < 1:
        return []
    # the x axis: commits in time order (not selection: every record is plotted, dataset.py is not asked)
    order = asv.sort_values("timestamp").drop_duplicates("git_commit")["git_commit"].tolist()
    asv["commit"] = pd.Categorical(asv["git_commit"].str[:8].map(figure_text, na_action="ignore"),
                                   list(dict.fromkeys(figure_text(c[:8]) for c in order)), ordered=True)
    asv["panel"] = (_label(asv) + " b" + asv["batch_size"].astype(str) + " " + asv["device"] + " " +
                    asv["machine"].astype(str)).map(figure_text)
    asv["time_ms"] = asv["time_median_s"].astype(float) * 1e3
    # a one-sample result (asv --quick) is one call (cold, before 0.3.1): drawn apart, never joined to the timings;
    # an untrusted one (imprecise median) is drawn apart too, with the tables' mark
    asv["timing"] = [ONE_SAMPLE if n == 1 else UNTRUSTED_TIMING if is_untrusted(t) else "timed"
                     for n, t in zip(asv["n_samples"], asv["time_trusted"])]
    grid = sns.relplot(data=asv.sort_values("commit"), x="commit", y="time_ms", hue="mode",
                       hue_order=_modes_in(asv), palette=PALETTE, col="panel",
                       col_wrap=min(3, asv["panel"].nunique()), kind="line",
                       style="timing", style_order=["timed", UNTRUSTED_TIMING, ONE_SAMPLE],
                       markers={"timed": "o", UNTRUSTED_TIMING: "D", ONE_SAMPLE: "X"},
                       dashes={"timed": "", UNTRUSTED_TIMING: (3, 2), ONE_SAMPLE: (1, 3)}, height=2.8, aspect=1.4,
                       facet_kws={"sharey": False})
    grid.set_axis_labels("commit (oldest first)", "forward time (ms)")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=45)
    grid.figure.suptitle("asv: forward time across commits", y=1.02)
    return _save(grid.figure, out_dir, "asv_history")


def draw_all(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Every figure; those by mode from one harness and commit per workload (dataset.one_source), the
    asv history from every asv record."""
    os.makedirs(out_dir, exist_ok=True)
    paths: list[str] = []
    one = one_source(df)
    for draw in (latency_vs_batch, memory_vs_batch, ratio_heatmaps, saved_bytes_by_mode):
        paths += draw(one, out_dir)
    return paths + asv_history(df, out_dir)
