"""report.md and a self-contained report.html from the records: the answer across workloads first, then each
workload's detail (findings, behaviour, ratios, energy, compiled, figures), then timing trust and the environment.
Both are rendered from one list of blocks, so they say the same thing; a section with nothing in it is left out."""
from __future__ import annotations

import base64
import datetime as dt
import html
import os

import pandas as pd

from ..version import __version__
from .. import dataset
from ..atomic import write_text
from ..modes import MODES
from ..errors import cannot_write
from ..record import case_label
from ..text import terminal_text
from .ab import ab_blocks, rounds_figure
from .answer import answer
from .capacity import capacity_blocks, capacity_figure
from .compilation import compiled_blocks, compiled_figure
from .energy import energy_blocks
from .predictions import prediction_blocks
from .compare import compare, interval_kind, one_sided_lines, text_table
from .figures import draw_all
from .files import output_folder, output_path, output_root
from .findings import findings
from .tables import (UNTRUSTED_LEGEND, as_text, behaviour_table, is_untrusted, markdown_text, missing_from_ratios,
                     render, summary_tables, terminal_table)

HEADINGS = ("h1", "h2", "h3", "h4")
ENV_FIELDS = ["source", "machine", "cpu", "gpu", "driver", "cuda", "torch", "python", "threads", "git_commit"]


def _environment(df: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct machine/software combination, with its record count."""
    cols = [c for c in ENV_FIELDS if c in df.columns]
    text = as_text(df[cols])
    text["git_commit"] = text["git_commit"].str[:12]
    return text.groupby(cols, sort=False).size().rename("records").reset_index().set_index("source")


def _timings(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ok timings, the untrusted ones among them); capacity's memory passes have no timing."""
    ok = df[(df["status"] == "ok") & df["time_median_s"].notna()]
    return ok, ok[[is_untrusted(v) for v in ok["time_trusted"]]]


def _trust_blocks(df: pd.DataFrame) -> list[tuple]:
    """How many timings are untrusted, and which, with the reason (the header counts them up front; the
    answer and the tables leave them out of ranges or mark them)."""
    ok, bad = _timings(df)
    if ok.empty:
        return []
    judged = ok[ok["time_trusted"].notna()]
    text = (f"{len(bad)} of {len(ok)} ok timings are untrusted, marked {UNTRUSTED_LEGEND[0]} in "
            f"the tables and figures; {len(ok) - len(judged)} were not judged (asv results, or files from before "
            "gradbench 0.3, whose medians were precise but whose contention was not measured). A timing is "
            "untrusted when, while it ran, other processes used more than 10% of the CPUs, its own threads "
            "waited for a CPU more than 10% of the time they ran, the hypervisor stole more than 5%, another "
            "process used its GPU or the GPU throttled for heat; or when its median's 95% interval was wider "
            "than +-10% at the time cap.")
    blocks = [("h2", "Timing trust"), ("p", text)]
    if not bad.empty:
        shown = bad.head(40)
        several = shown["repeat"].fillna(1).astype(float).gt(1).any() if "repeat" in shown else False
        table = pd.DataFrame({
            "case": [case_label(r, omit=("mode",)) + (f" (process {int(r['repeat'] or 1)})" if several else "")
                     for _, r in shown.iterrows()],
            "mode": shown["mode"].values,
            "other CPU use": [f"{v:.0%}" if pd.notna(v) else "-" for v in shown["cpu_other_share"]],
            "CPU wait": [f"{v:.0%}" if pd.notna(v) else "-" for v in shown["cpu_wait_share"]],
            "why": shown["time_distrust"].fillna("-").values,
        }).set_index("case")
        blocks += [("h3", "Untrusted timings" + (f" (first 40 of {len(bad)})" if len(bad) > 40 else "")),
                   ("table", table)]
    return blocks


def _harness_blocks(df: pd.DataFrame) -> list[tuple]:
    """The same cases timed by several harnesses, their medians side by side with the ratio: each harness
    times with its own timer, and a disagreement between them must be seen, not averaged away."""
    ok = df[df["status"] == "ok"]
    if ok["source"].nunique() < 2:
        return []
    table, sides, only = compare(ok, "harness")
    blocks: list[tuple] = [("h2", "The same cases from several harnesses")]
    if table.empty:
        return blocks + [("p", f"Records come from {', '.join(sides)}, but no case was measured by two of them.")]
    machines = "; ".join(f"{side} on {', '.join(sorted(set(part['machine'].dropna().astype(str)))) or '?'}"
                         for side, part in ok.groupby("source", sort=False))
    blocks.append(("p", (
        f"Each harness times the same warm step with its own timer, in blocks of steps (at least 1 ms) counted "
        f"per step: gradbench run until its median is known to +-2%, asv for 5 to 100 samples in about 2 s, "
        f"pytest-benchmark for rounds of about 0.3 s (suites of gradbench 0.3.0 and before timed single, "
        f"colder calls). Time ratio = other / baseline ({sides[0]}), with the bootstrap 95% interval of "
        f"`gradbench compare --by harness` ({interval_kind(table)}); a harness's time is the median over its "
        f"runs (asv: one per commit). Machines: {machines}. A ratio far from 1 whose interval excludes 1 is a "
        f"real disagreement, of the harnesses or of the processes they ran in (on a shared machine whole "
        f"processes run faster or slower); 'NO' under trusted: a side has only untrusted timings (asv "
        f"--quick's one sample, say).")))
    order = {m: i for i, m in enumerate(MODES)}
    table = table.sort_values(["other", "step", "mode"], key=lambda c: c.map(order) if c.name == "mode" else c,
                              kind="stable")
    blocks.append(("table", text_table(table)))
    if only:
        blocks.append(("p", "Missing on one side of a pair, not compared: " + "; ".join(one_sided_lines(only))
                            + "."))
    return blocks


def _behaviour_blocks(df: pd.DataFrame) -> list[tuple]:
    blocks = []
    measured = df[(df["step"] == "forward") & df["graph_recorded"].notna()]
    # a compiled workload's modes are not its eager modes: one table each
    for _, part in measured.groupby(["model", "size", "seq_len", "image_size", "device", "dtype", "compile",
                                     "autocast"], dropna=False):
        if not (part["status"] == "ok").any():
            continue  # nothing was observed: a table of failures says no more than the findings do
        batch = part[part["status"] == "ok"]["batch_size"].max()
        records = part[part["batch_size"] == batch].to_dict("records")
        blocks.append(("h3", case_label(records[0], omit=("mode", "step"))))
        blocks.append(("table", behaviour_table(records)))
    return blocks


def _answer_blocks(df: pd.DataFrame) -> list[tuple]:
    """The first section: one row per mode across every workload (answer.py), its notes and a sentence per
    mode; nothing where no forward was measured."""
    found = answer(df)
    if found.table.empty:
        return []
    return [("h2", "The answer"),
            ("p", "Each mode's forward pass against train's, across every workload in the file."),
            ("table", found.table), *(("note", note) for note in found.notes), ("list", found.sentences)]


def _ratio_blocks(df: pd.DataFrame) -> list[tuple]:
    """Each mode as a ratio to train, per workload, with why a row or cell is missing."""
    tables = summary_tables(df)
    if not tables:
        return []
    blocks: list[tuple] = [("h2", "Each mode as a ratio to train (forward)"), ("p", UNTRUSTED_LEGEND + ".")]
    for name, table in tables.items():
        blocks += [("h3", name), ("table", table)]
    return blocks + [("note", line) for line in missing_from_ratios(df)]


def without_empty_sections(blocks: list[tuple]) -> list[tuple]:
    """``blocks`` less every heading with nothing under it before the next heading of its level or above."""
    def empty(i: int) -> bool:
        level = int(blocks[i][0][1])
        for block in blocks[i + 1:]:
            if block[0] not in HEADINGS:
                return False
            if int(block[0][1]) <= level:
                return True
        return True

    return [b for i, b in enumerate(blocks) if not (b[0] in HEADINGS and b[0] != "h1" and empty(i))]


def build_blocks(df: pd.DataFrame, figures: list[str], out_dir: str, title: str,
                 combined: pd.DataFrame | None = None) -> list[tuple]:
    """``df``: the records as read (counted as such); ``combined``: one row per case (tables, findings).
    Capacity records (`gradbench capacity --out`) have a section of their own and stay out of the rest."""
    trials = dataset.ab_trials(df)
    predicted = prediction_blocks(df)  # the measurements they are set beside are among the cases read
    predictions = dataset.predictions(df)
    n_predictions = len(predictions)
    raw = df = dataset.reported(df)
    cases = dataset.cases(df)
    df = dataset.combined(cases) if combined is None else dataset.cases(combined)
    ok = int((raw["status"] == "ok").sum())
    repeats = (f" Cases measured in several processes (--repeat) are combined: {len(cases)} records make "
               f"{len(df)} case results, each the median of its processes' medians.") if len(df) < len(cases) else ""
    chosen = dataset.one_source(df)
    harnesses = (f" Where several harnesses or commits measured a workload, its tables, findings and figures "
                 f"use the records of one harness, the first of "
                 f"{', '.join(h for h in dataset.HARNESS_ORDER if h in set(df['source']))} that measured it, at its "
                 f"newest commit ({len(chosen)} of {len(df)} case results); the side-by-side table and the asv "
                 f"history have them all.") if len(chosen) < len(df) else ""
    df = chosen  # modes are set against each other within one harness's records of one commit
    timings, untrusted = _timings(raw)
    trust = (f" {len(untrusted)} of {len(timings)} ok timings are untrusted: they are left out of the answer's "
             f"time ranges and marked {UNTRUSTED_LEGEND[0]} elsewhere (Timing trust, near the end, says why)."
             if len(untrusted) else "")
    # nothing completed (not_applicable is no finding, and has no table): the header says why, not silence
    unmeasured = (" Nothing completed, so no mode is set against train. " + " ".join(missing_from_ratios(df))
                  if ok == 0 and not df.empty else "")
    shown = raw if len(raw) else trials if len(trials) else predictions
    counted = (f"{len(raw)} records ({ok} ok)" if len(raw) or not (len(trials) or n_predictions) else
               f"{len(trials)} A/B trials" if len(trials) else f"{n_predictions} prediction records")
    apart = [f"{n} {what}" for n, what in ((len(trials), "A/B trials"), (n_predictions, "prediction records"))
             if n and f"{n} {what}" != counted]
    header = [
        ("h1", title),
        ("p", counted + f" from {_sources(shown)} source(s); written {dt.datetime.now().isoformat(timespec='seconds')} by gradbench {__version__}. "
              "Every number below is computed from those records." + unmeasured + trust + repeats + harnesses +
              (f" {' and '.join(apart)} are in sections of their own." if apart else "")),
    ]
    detail: list[tuple] = []
    if not df.empty:  # else capacity records alone
        found = findings(df)
        detail += [("h2", "Findings"), *([("findings", found)] if found else [])]
        behaviour = _behaviour_blocks(df)
        if behaviour:
            detail += [("h2", "Measured behaviour of every mode"),
                       ("p", "Observed during a real forward pass at each workload's largest batch; "
                             "'n/a' where the model has no such layer. Time and memory are ratios to train. "
                             + UNTRUSTED_LEGEND + "."), *behaviour]
        detail += _ratio_blocks(df) + energy_blocks(df) + compiled_blocks(cases, df)
    blocks = [*header, *(_answer_blocks(df) if not df.empty else []), *detail, *_harness_blocks(cases),
              *capacity_blocks(raw), *predicted, *ab_blocks(trials), *_figure_blocks(figures, out_dir),
              *_trust_blocks(raw), ("h2", "Environment"), ("table", _environment(shown))]
    return without_empty_sections(blocks)


def _sources(df: pd.DataFrame) -> int:
    return df["source_file"].nunique() if "source_file" in df else 1


def _figure_blocks(figures: list[str], out_dir: str) -> list[tuple]:
    return [("h2", "Figures"), *(("img", path, os.path.relpath(path, out_dir)) for path in figures
                                 if path.endswith(".png"))]


def _md(blocks) -> str:
    """report.md: every text escaped (markdown_text), as _html escapes it: records and --title are input from
    anyone, and markdown renders raw HTML. The markup is ours alone; figure paths are slugs (files.py)."""
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "h4"):
            lines += ["#" * int(kind[1]) + " " + markdown_text(block[1]), ""]
        elif kind == "p":
            lines += [markdown_text(block[1]), ""]
        elif kind == "note":  # under a table: what it rests on, what is missing and why
            lines += [f"<sub>{markdown_text(block[1])}</sub>", ""]
        elif kind == "list":
            lines += [*(f"- {markdown_text(item)}" for item in block[1]), ""]
        elif kind == "table":
            lines += [render(block[1], "markdown"), ""]
        elif kind == "findings":
            for f in block[1]:
                records = markdown_text("; ".join(f.records))
                lines.append(f"- {markdown_text(f.text)}  \n  <sub>records: {records}</sub>")
            lines.append("")
        elif kind == "img":
            lines += [f"![{os.path.basename(block[2])}]({block[2]})", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child
{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0 1.5em}li{margin:.4em 0}
.refs{color:#777;font-size:11px;display:block}.note{color:#555;font-size:12px;margin:-1em 0 1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"""


def _html_text(text) -> str:
    """Text from a record as report.html shows it: markup escaped, control and bidi characters shown escaped
    (raw, a U+202E reverses what is read; terminal_text)."""
    return html.escape(terminal_text(text))


def _html_table(table: pd.DataFrame) -> str:
    """A table as HTML, its index a first column under its name (pandas gives a named index a header row of its
    own, a second, empty header under the first)."""
    table = terminal_table(table)
    named = table.index.name is not None
    return (table.reset_index() if named else table).to_html(border=0, na_rep="-", index=not named)


def _html(blocks) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_html_text(blocks[0][1])}</title>"
             f"<style>{_CSS}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "h4"):
            parts.append(f"<{kind}>{_html_text(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_html_text(block[1])}</p>")
        elif kind == "note":
            parts.append(f"<p class='note'>{_html_text(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_html_text(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            parts.append(_html_table(block[1]))
        elif kind == "findings":
            items = "".join(f"<li>{_html_text(f.text)}<span class='refs'>records: "
                            f"{_html_text('; '.join(f.records))}</span></li>" for f in block[1])
            parts.append(f"<ul>{items}</ul>")
        elif kind == "img":
            with open(block[1], "rb") as f:
                data = base64.b64encode(f.read()).decode()  # embedded: the page opens offline, alone
            parts.append(f"<img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(df: pd.DataFrame, out_dir: str, title: str = "gradbench report") -> dict:
    """Draw the figures and write report.md and report.html into out_dir; return their paths."""
    folder = output_folder(output_root(out_dir), "figures")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise cannot_write("report to", out_dir, exc) from None
    md_path, html_path = output_path(out_dir, "report", "md"), output_path(out_dir, "report", "html")
    combined = dataset.combined(df)  # a --repeat run's processes combined; capacity probes left out
    figures = ((draw_all(combined, folder) + compiled_figure(combined, folder) if not combined.empty else [])
               + capacity_figure(df, folder) + rounds_figure(df, folder))
    blocks = build_blocks(df, figures, out_dir, title, combined)
    write_text(md_path, _md(blocks), "report")
    write_text(html_path, _html(blocks), "report")
    return {"markdown": md_path, "html": html_path, "figures": figures}
