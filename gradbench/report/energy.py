"""The report's energy section: energy per step beside time, where NVML's counter measured it (CUDA).

Energy is read over the timed blocks (measure/energy.py); a record without it says why in energy_note.
Each mode is set beside train of the same workload, as time and memory are; nothing here measures.
The section appears only where records speak of energy at all (files from before gradbench 0.4.1 do
not); a value that is not a positive energy is no measurement (the pipeline writes null instead).
"""
from __future__ import annotations

import pandas as pd

from ..modes import MODES
from ..record import case_label
from ..units import ratio_text
from .tables import UNTRUSTED_MARK, is_untrusted, ratio_to_train, workload_label

MAX_ROWS = 60


def _energy(df: pd.DataFrame) -> pd.Series:
    values = pd.to_numeric(df["energy_j"], errors="coerce") if "energy_j" in df else pd.Series(index=df.index)
    return values.where(values > 0)


def energy_records(df: pd.DataFrame) -> pd.DataFrame:
    """Ok CUDA records with a positive energy per step."""
    cuda = df["device"].astype(str).str.startswith("cuda")
    return df[(df["status"] == "ok") & cuda & _energy(df).notna()]


def _number(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.4g}"


def energy_blocks(df: pd.DataFrame) -> list[tuple]:
    """Energy per step, samples per joule and mean power of every case measured with energy; each mode's
    energy as a ratio to train's; and how many CUDA timings have none, with the reasons."""
    cuda_ok = df[(df["status"] == "ok") & df["device"].astype(str).str.startswith("cuda") & df["time_median_s"].notna()]
    measured = energy_records(df)
    notes = cuda_ok["energy_note"] if "energy_note" in cuda_ok else pd.Series(dtype=object)
    if measured.empty and notes.dropna().empty:
        return []  # no CUDA record speaks of energy: nothing to say (older files, cpu runs)
    blocks: list[tuple] = [("h2", "Energy per step (CUDA)")]
    missing = cuda_ok[_energy(cuda_ok).isna()]
    reasons = missing["energy_note"].dropna().str.replace(r"\d+ ms", "N ms", regex=True).value_counts() \
        if "energy_note" in missing else pd.Series(dtype=int)
    text = (f"{len(measured)} of {len(cuda_ok)} ok CUDA timings have energy: NVML's total energy counter read "
            "around the timed blocks (the whole GPU, idle gaps between blocks included), divided by the steps "
            "timed. Mean power = energy per step / time per step. ")
    if len(reasons):
        text += "The others have none: " + "; ".join(f"{n} x '{why}'" for why, n in reasons.head(3).items()) + "."
    unexplained = len(missing) - int(reasons.sum()) if len(reasons) else len(missing)
    if unexplained:
        text += f" {unexplained} say nothing of energy (measured before gradbench read it)."
    blocks.append(("p", text))
    if measured.empty:
        return blocks
    order = {m: i for i, m in enumerate(MODES)}
    shown = measured.sort_values(["model", "size", "batch_size", "dtype", "step", "mode"],
                                 key=lambda c: c.map(order) if c.name == "mode" else c, kind="stable").head(MAX_ROWS)
    energy = _energy(shown)
    table = pd.DataFrame({
        "case": [case_label(r, omit=("mode",)) for _, r in shown.iterrows()],
        "mode": shown["mode"].values,
        "time (ms)": [f"{t * 1e3:.4g}" + (UNTRUSTED_MARK if is_untrusted(v) else "")
                      for t, v in zip(shown["time_median_s"], shown["time_trusted"])],
        "energy (mJ/step)": [_number(e * 1e3) for e in energy],
        "samples/J": [_number(b / e) for b, e in zip(shown["batch_size"], energy)],
        "mean power (W)": [_number(e / t) if t else "-" for e, t in zip(energy, shown["time_median_s"])],
        "resolution": shown["energy_note"].fillna("-").astype(str).str.split(" \\(").str[0].values,
    }).set_index("case")
    blocks += [("h3", "Measured" + (f" (first {MAX_ROWS} of {len(measured)})" if len(measured) > MAX_ROWS else "")),
               ("table", table)]
    ratios = ratio_to_train(measured.assign(energy_j=_energy(measured)), "energy_j")
    if not ratios.empty:
        text = ratios.map(ratio_text)
        text.index = pd.Index([workload_label(i) for i in ratios.index], name="case")
        text.columns.name = None
        blocks += [("h3", "energy per step vs train (forward)"), ("table", text)]
    return blocks
