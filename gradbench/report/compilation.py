"""The report's compiled section: each compiled case beside the same case run eager, the order each
compiled group's modes ran in with what they compiled, and findings drawn from those numbers.

Under torch.compile a workload's modes share one compiled model and run one after another, so what a
case compiles depends on what ran before it in its group: the recompile table keeps that order, and
the findings name the switches the records say recompiled, never the ones a reader would expect to.
The section appears only when some ok record ran compiled.
"""
from __future__ import annotations

import re

import pandas as pd

from ..dataset import baseline as baseline_of, one_source
from ..frame import with_identity_defaults
from ..modes import MODES
from ..record import case_label
from ..schema import CASE_KEY_FIELDS, IDENTITY_DEFAULTS, GROUP_FIELDS
from ..units import human_bytes, ratio_text
from .findings import Finding
from .tables import UNTRUSTED_LEGEND, UNTRUSTED_MARK, as_text, is_untrusted

EAGER = IDENTITY_DEFAULTS["compile"]  # "none"
NO_AUTOCAST = IDENTITY_DEFAULTS["autocast"]
# The same case is only set against itself measured by the same harness on the same machine.
SAME_MEASUREMENT = ("source", "machine")
RANGE_MODES = ("train", "eval_no_grad", "eval_inference_mode")
REASON_CHARS = 80
STEP_ORDER = {"forward": 0, "train_step": 1}
MODE_ORDER = {m: i for i, m in enumerate(MODES)}


def has_compiled(df: pd.DataFrame) -> bool:
    """The section's condition: an ok record that ran under torch.compile."""
    if df.empty:
        return False
    df = with_identity_defaults(df)
    return bool(((df["status"] == "ok") & (df["compile"] != EAGER)).any())


def _keys(df: pd.DataFrame, columns) -> list[tuple]:
    """Rows as hashable keys, a null as '-' (NaN never equals itself)."""
    return list(zip(*(as_text(df[c]) for c in columns)))


def paired(df: pd.DataFrame, axis: str = "compile") -> list[tuple[dict, dict | None]]:
    """(changed, baseline) for every ok timed record whose ``axis`` is not 'none': the record of the same
    case with ``axis`` 'none', or None. Autocast is set against no autocast among eager records only, so
    that compile's shared model and order stay out of it."""
    df = with_identity_defaults(df)
    timed = df[(df["status"] == "ok") & df["time_median_s"].notna()]
    changed = timed[timed[axis] != IDENTITY_DEFAULTS[axis]]
    if axis == "autocast":
        changed = changed[changed["compile"] == EAGER]
    baseline = timed[timed[axis] == IDENTITY_DEFAULTS[axis]]
    match = [k for k in (*CASE_KEY_FIELDS, *SAME_MEASUREMENT) if k != axis]
    by_case: dict[tuple, list] = {}
    for key, record in zip(_keys(baseline, match), baseline.to_dict("records")):
        by_case.setdefault(key, []).append(record)
    pairs = [(record, baseline_of(record, by_case.get(key, [])))
             for key, record in zip(_keys(changed, match), changed.to_dict("records"))]
    return sorted(pairs, key=lambda pair: _case_order(pair[0]))


def _case_order(record) -> tuple:
    """A workload's rows together, its compile settings side by side, modes in the house order."""
    return (*(str(record[k]) for k in ("model", "size", "device", "dtype")), record["autocast"] != NO_AUTOCAST,
            str(record["autocast"]), record["batch_size"],
            str(record["compile"]), STEP_ORDER.get(record["step"], 9), MODE_ORDER.get(record["mode"], 99))


def _ratio(changed, baseline, field: str) -> float | None:
    """changed's field over baseline's, where both were measured."""
    if baseline is None:
        return None
    a, b = changed.get(field), baseline.get(field)
    return float(a) / float(b) if pd.notna(a) and pd.notna(b) and b else None


def _needed(record) -> float | None:
    """held + peak: what must fit for the step."""
    held, peak = record.get("held_bytes"), record.get("peak_bytes")
    return float(held) + float(peak) if pd.notna(held) and pd.notna(peak) else None


def _needed_ratio(changed, baseline) -> float | None:
    if baseline is None:
        return None
    a, b = _needed(changed), _needed(baseline)
    return a / b if a is not None and b else None


def _ms(record) -> str:
    return f"{record['time_median_s'] * 1e3:.3g}" + (UNTRUSTED_MARK if is_untrusted(record.get("time_trusted")) else "")


def _times(value: float | None, doubt: bool = False) -> str:
    return "-" if value is None else ratio_text(value) + (UNTRUSTED_MARK if doubt else "")


def versus_table(pairs: list[tuple], axis: str = "compile") -> pd.DataFrame:
    """One row per changed case: both medians and the ratios changed / baseline. A case without a baseline
    says so and has no ratio."""
    base_name, changed_name = ("eager", "compiled") if axis == "compile" else ("no autocast", "autocast")
    per = f"{changed_name}/{base_name}"
    rows = []
    for changed, base in pairs:
        doubt = base is not None and (is_untrusted(changed.get("time_trusted")) or
                                      is_untrusted(base.get("time_trusted")))
        row = {"workload": case_label(changed, omit=("mode", "step", axis)), axis: changed[axis],
               "step": changed["step"], "mode": changed["mode"],
               f"{base_name} ms": _ms(base) if base is not None else f"no {base_name} record",
               f"{changed_name} ms": _ms(changed),
               f"time {per}": _times(_ratio(changed, base, "time_median_s"), doubt),
               f"peak {per}": _times(_ratio(changed, base, "peak_bytes")),
               f"held+peak {per}": _times(_needed_ratio(changed, base))}
        if axis == "autocast":
            row["output dtype"] = str(changed.get("output_dtype") or "-").replace("torch.", "")
        rows.append(row)
    return pd.DataFrame(rows).set_index("workload") if rows else pd.DataFrame()


# dynamo's wording of a failed guard -> the switch it guarded (report/compilation.py names switches, not guards)
GUARD_KINDS = (("grad_mode", "grad mode"), ("dispatch key set mismatch", "inference mode"),
               (".training ==", "training flag"), ("requires_grad mismatch", "requires_grad"),
               ("autocast", "autocast"))


# a Python number the forward computed (x.item()), specialised into the graph: "s == 0.2328  # ..."
VALUE_GUARD = re.compile(r"^\S+ == -?\d+(\.\d*)?(e[-+]?\d+)?(\s|$)")


def guard_kinds(reasons) -> list[str]:
    """The switches whose guards failed, in the order first met; an unknown guard by its own words."""
    if not isinstance(reasons, (list, tuple)):
        return []
    kinds = []
    for reason in reasons:
        text = " ".join(str(reason).split())
        kind = next((name for needle, name in GUARD_KINDS if needle in text), None) or \
            ("a number the forward computed" if VALUE_GUARD.match(text) else None)
        kinds.append(kind or (text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."))
    return list(dict.fromkeys(kinds))


def _count(value) -> str:
    return "-" if value is None or pd.isna(value) else str(int(value))


COMPILED_MODEL_FIELDS = [*GROUP_FIELDS, "run_id", "repeat"]  # one compiled model: one group in one process


def compiled_groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Each compiled group's cases (not_applicable ones left out: they ran nothing), in the order they ran:
    by timestamp, records of the same second in the order they were read."""
    df = with_identity_defaults(df)
    ran = df[(df["compile"] != EAGER) & (df["status"] != "not_applicable")]
    if ran.empty:
        return []
    at = pd.to_datetime(ran["timestamp"], utc=True, errors="coerce", format="ISO8601")
    ran = ran.assign(_ran_at=at)
    return [part.sort_values("_ran_at", kind="stable", na_position="last")
            for _, part in ran.groupby(pd.Series(_keys(ran, COMPILED_MODEL_FIELDS), index=ran.index), sort=False)]


def _group_label(group: pd.DataFrame, several_processes: bool) -> str:
    first = group.iloc[0]
    repeat = int(first["repeat"]) if pd.notna(first["repeat"]) else 1  # null: a run of one process
    process = f", process {repeat}" if several_processes else ""
    return f"{case_label(first, omit=('mode', 'step'))}, run {first['run_id']}{process}"


def _clock(timestamp) -> str:
    """'2026-01-02T03:04:05+00:00' as '03:04:05': a group runs within minutes."""
    return timestamp[11:19] if isinstance(timestamp, str) and len(timestamp) >= 19 else "-"


def recompile_table(group: pd.DataFrame) -> pd.DataFrame:
    """A group's cases as they ran: what each compiled, recompiled and why."""
    rows = []
    for position, (_, r) in enumerate(group.iterrows(), 1):
        row = {"#": position, "time": _clock(r["timestamp"]), "mode": r["mode"],
               "step": r["step"], "compiles": _count(r["compiles"]), "recompiles": _count(r["recompiles"]),
               "compile s": "-" if pd.isna(r["compile_time_s"]) else f"{r['compile_time_s']:.2f}",
               "graph breaks": _count(r["graph_breaks"]),
               "guards failed": ", ".join(guard_kinds(r["recompile_reasons"])) or "-"}
        if group["compile_cold"].eq(True).any():
            row["cold"] = "yes" if pd.notna(r["compile_cold"]) and bool(r["compile_cold"]) else "-"
        if (group["status"] != "ok").any():
            row["status"] = r["status"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("#")


def _case_name(record) -> str:
    return f"{record['mode']} {record['step']}"


def _setting_words(record) -> str:
    autocast = record["autocast"]
    return f"compile={record['compile']}" + (f" with autocast={autocast}" if autocast != NO_AUTOCAST else "")


def recompile_findings(groups: list[pd.DataFrame]) -> list[Finding]:
    """Per compile setting: the cases whose switch recompiled (after what, and why), and those that reused
    the group's compiled code in every group they ran in."""
    by_setting: dict[str, dict[str, dict]] = {}
    for group in groups:
        for r in group.to_dict("records"):
            if r["status"] == "ok" and pd.notna(r["compiles"]):
                seen = by_setting.setdefault(_setting_words(r), {}).setdefault(
                    _case_name(r), {"ran": [], "recompiled": [], "compiled": 0, "reasons": []})
                seen["ran"].append(r)
                seen["compiled"] += int(r["compiles"] > 0)
                if pd.notna(r["recompiles"]) and r["recompiles"] > 0:
                    seen["recompiled"].append(r)
                    seen["reasons"] += guard_kinds(r["recompile_reasons"])
    out = []
    for setting, cases in by_setting.items():
        switched = {name: seen for name, seen in cases.items() if seen["recompiled"]}
        if switched:
            parts = [f"{name} (in {len(seen['recompiled'])} of {len(seen['ran'])} group(s)"
                     + (f"; guards on {', '.join(dict.fromkeys(seen['reasons']))})" if seen["reasons"] else ")")
                     for name, seen in switched.items()]
            refs = [r for seen in switched.values() for r in seen["recompiled"]][:6]
            out.append(Finding(f"Under {setting}, switching to these cases recompiled the shared model (the "
                               "switches whose guards failed, as dynamo reported them): "
                               + "; ".join(parts) + ".", refs))
        reused = {name: seen for name, seen in cases.items() if seen["compiled"] == 0}
        if reused:
            out.append(Finding(f"Under {setting}, {', '.join(reused)} reused the compiled code of the cases "
                               "before them in every group they ran in (no compilation).",
                               [r for seen in reused.values() for r in seen["ran"]][:6]))
    return out


def _saving_words(ratio: float) -> str:
    return f"saved {1 - ratio:.0%} of" if ratio <= 1 else f"needed {ratio - 1:.0%} more than"


def eval_memory_findings(pairs: list[tuple]) -> list[Finding]:
    """Does compile change what eval alone saves? eval's forward peak over train's, eager and compiled,
    at each compiled workload's largest batch where all four were measured."""
    forward = {}
    for compiled, eager in pairs:
        if compiled["step"] == "forward" and eager is not None:
            forward[(*(compiled[k] for k in GROUP_FIELDS), compiled["mode"])] = (compiled, eager)
    largest = {}
    for (*workload, mode), _ in forward.items():
        if mode != "train" or (*workload, "eval") not in forward:
            continue
        train, evalm = forward[(*workload, "train")], forward[(*workload, "eval")]
        if all(_ratio(e, t, "peak_bytes") is not None for e, t in zip(evalm, train)):
            unbatched = tuple(v for k, v in zip(GROUP_FIELDS, workload) if k != "batch_size")
            batch = workload[GROUP_FIELDS.index("batch_size")]
            if unbatched not in largest or batch > largest[unbatched][0]:
                largest[unbatched] = (batch, train, evalm)
    out = []
    for _, (c_train, e_train), (c_eval, e_eval) in largest.values():
        line = (f"eval alone {_saving_words(_ratio(e_eval, e_train, 'peak_bytes'))} train's forward peak memory "
                f"eager and {_saving_words(_ratio(c_eval, c_train, 'peak_bytes'))} it under "
                f"{_setting_words(c_train)}, on {case_label(c_train, omit=('mode', 'step', 'compile'))}")
        saved = [r.get("saved_bytes") for r in (e_eval, e_train, c_eval, c_train)]
        if all(pd.notna(v) for v in saved):
            line += (f"; autograd saved {human_bytes(saved[0])} for backward in eval against train's "
                     f"{human_bytes(saved[1])} eager, {human_bytes(saved[2])} against {human_bytes(saved[3])} "
                     "compiled")
        out.append(Finding(line + ".", [e_train, e_eval, c_train, c_eval]))
    return out


def time_range_findings(pairs: list[tuple]) -> list[Finding]:
    """How far compile moved the time of train and the two inference modes, as the range of its ratios over
    trusted timings: an untrusted one never makes an end of a range (how many were left out is said)."""
    by_setting: dict[tuple, dict[str, list]] = {}
    left_out: dict[tuple, int] = {}
    for compiled, eager in pairs:
        ratio = _ratio(compiled, eager, "time_median_s")
        if ratio is not None and compiled["mode"] in RANGE_MODES:
            key = (_setting_words(compiled), compiled["step"])
            if is_untrusted(compiled.get("time_trusted")) or is_untrusted(eager.get("time_trusted")):
                left_out[key] = left_out.get(key, 0) + 1
                continue
            by_setting.setdefault(key, {}).setdefault(compiled["mode"], []).append((ratio, compiled, eager))
    out = []
    for (setting, step), modes in by_setting.items():
        parts, refs = [], []
        for mode in (m for m in RANGE_MODES if m in modes):
            ratios = sorted(v for v, _, _ in modes[mode])
            low, high = ratio_text(ratios[0]), ratio_text(ratios[-1])
            span = low if low == high else f"{low} to {high}"
            parts.append(f"{mode} {span} (over {len(ratios)} workload{'s' if len(ratios) > 1 else ''})")
            refs += [r for _, c, e in modes[mode] for r in (c, e)]
        skipped = left_out.get((setting, step), 0)
        out.append(Finding(f"{step} time under {setting} as a ratio to eager: " + ", ".join(parts) + "."
                           + (f" {skipped} pair(s) with an untrusted timing left out." if skipped else ""), refs))
    return out


def compiled_blocks(runs: pd.DataFrame, cases: pd.DataFrame) -> list[tuple]:
    """``runs``: the records as read (each process's group keeps its own order); ``cases``: one row per case,
    one harness per workload (the ratio table and findings)."""
    if not has_compiled(runs):
        return []
    pairs = paired(cases, "compile")
    groups = compiled_groups(runs)
    blocks: list[tuple] = [
        ("h2", "Compiled vs eager (torch.compile)"),
        ("p", "Under torch.compile a workload's modes share one compiled model and run one after another, in a "
              "shuffled order: a mode whose switch (training flag, grad mode, requires_grad) breaks one of "
              "dynamo's guards recompiles. Each compiled case is set beside the same case run eager (compile "
              "none): same model, size, batch, device, dtype, autocast, mode and step, measured by the same "
              "harness on the same machine, from the same run where there is one, else the newest. Ratios are "
              "compiled / eager (below 1: compiled is faster, or needs less); peak is the peak above what was "
              "held before the step, held+peak is what must fit. Compilation is kept out of the medians: it is "
              f"the compile time of the recompile tables. {UNTRUSTED_LEGEND}."),
    ]
    found = recompile_findings(groups) + eval_memory_findings(pairs) + time_range_findings(pairs)
    if found:
        blocks.append(("findings", found))
    blocks += [("h3", "Compiled vs eager, per mode"), ("table", versus_table(pairs, "compile"))]
    missing = sum(1 for _, eager in pairs if eager is None)
    if missing:
        blocks.append(("p", f"{missing} compiled case(s) have no eager record of the same case, harness and "
                            "machine: they are listed without a ratio."))
    autocast_pairs = [(changed, base) for changed, base in paired(cases, "autocast") if base is not None]
    if autocast_pairs:
        blocks += [("h3", "Autocast vs no autocast (eager)"),
                   ("p", "Each eager case under torch.autocast beside the same eager case without it (the "
                         "dtype's own precision); ratios are autocast / none; output dtype is what the "
                         "forward returned."),
                   ("table", versus_table(autocast_pairs, "autocast"))]
    if groups:
        several = any(pd.to_numeric(g["repeat"], errors="coerce").max() > 1 for g in groups)
        blocks += [("h3", "Compile and recompile, in the order each group ran"),
                   ("p", "One table per compiled group (one workload, compile and autocast setting in one "
                         "process): its cases in the order they ran. compiles: dynamo compilations during the "
                         "case (frames, and backward graphs at their first backward), recompiles: frames "
                         "compiled again because a guard failed; guards failed: the switches those guards were "
                         "on, for each compiled entry dynamo checked the first guard that failed (the records "
                         "keep dynamo's words, in recompile_reasons); compile s: the first call minus the median step "
                         "(about 0 when nothing compiled); cold: compiler caches reset before the case.")]
        for group in groups:
            blocks += [("h4", _group_label(group, several)), ("table", recompile_table(group))]
    return blocks


def compiled_figure(df: pd.DataFrame, out_dir: str) -> list[str]:
    """compiled / eager time per mode, hue = compile setting, one panel per workload and step."""
    from .figures import _save, figure_text, sns

    rows = [{"panel": figure_text(f"{case_label(c, omit=('mode', 'step', 'compile'))} {c['step']}"), "mode": c["mode"],
             "compile": figure_text(c["compile"]), "ratio": _ratio(c, e, "time_median_s")}
            for c, e in paired(one_source(df), "compile")]
    data = pd.DataFrame([r for r in rows if r["ratio"] is not None])
    if data.empty:
        return []
    panels = data["panel"].nunique()
    grid = sns.catplot(data=data, x="mode", y="ratio", hue="compile", col="panel", col_wrap=min(3, panels),
                       kind="bar", order=[m for m in MODES if m in set(data["mode"])], height=3, aspect=1.4,
                       sharey=False, errorbar=None)
    for ax in grid.axes.flat:
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.tick_params(axis="x", rotation=45)
    grid.set_axis_labels("", "time compiled / eager")
    grid.set_titles("{col_name}", size=8)
    grid.figure.suptitle("torch.compile: time as a ratio to eager, by mode (dashed: eager; below: faster)", y=1.02)
    return _save(grid.figure, out_dir, "compiled_vs_eager")
