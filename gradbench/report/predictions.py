"""The report's predictions section: `gradbench predict` records set beside the measurements of the same cases.

A prediction (kind ``prediction``) holds the held, peak and saved bytes computed on fake tensors; a measured
case of the same identity (``predict --verify`` writes one beside it; a `gradbench run` of the same case
does too) holds what the allocator saw. Each prediction that stands (the newest of its case, dataset.py) is
paired with the measurement that stands for its case, if it ran ok; the ratio predicted / measured is shown
per field, and the worst per model, so that how far a prediction can be trusted is read off the records
themselves. A case fake tensors could not follow (status ``unpredictable``) is listed with its reason.
"""
from __future__ import annotations

import math

import pandas as pd

from ..dataset import cases as measured_cases, predictions
from ..record import case_key, case_label
from ..text import counted, first_line
from ..units import human_bytes

FIELDS = (("held_bytes", "held"), ("peak_bytes", "peak"), ("saved_bytes", "saved"))
WITHIN = 0.02  # the accuracy the predictions are held to (docs/predict.md): within 2% of the measurement


def _bytes(value) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def _newest_by_case(records: list[dict]) -> dict[tuple, dict]:
    """The newest record (last read) per case: reading keeps one per case and repeat (dataset.standing), and
    a --repeat run's processes, each its own, measured the same bytes."""
    out: dict[tuple, dict] = {}
    for r in records:
        out.pop(case_key(r), None)
        out[case_key(r)] = r
    return out


def paired(df: pd.DataFrame) -> list[tuple[dict, dict | None]]:
    """(prediction, its measurement or None) per predicted case, in the order the predictions were read."""
    predicted = _newest_by_case(predictions(df).to_dict("records"))
    measured = _newest_by_case([r for r in measured_cases(df).to_dict("records") if r.get("status") == "ok"])
    return [(p, measured.get(key)) for key, p in predicted.items()]


def ratio(predicted, measured) -> float | None:
    """predicted / measured; 1 where both are 0; None where either is missing or only the measurement is 0."""
    p, m = _bytes(predicted), _bytes(measured)
    if p is None or m is None:
        return None
    if m == 0:
        return 1.0 if p == 0 else None
    return p / m


def _figures(record: dict) -> str:
    return " / ".join("-" if _bytes(record.get(f)) is None else human_bytes(_bytes(record[f])) for f, _ in FIELDS)


def _ratios(p: dict, m: dict | None) -> list[float | None]:
    """predicted / measured for held, peak and saved bytes; None where there is nothing to set beside."""
    ok = p.get("status") == "ok" and m is not None
    return [ratio(p.get(field), m.get(field)) if ok else None for field, _ in FIELDS]


def within(p: dict, m: dict | None) -> bool | None:
    """Every one of held, peak and saved bytes that was measured within WITHIN of the measurement; None where
    nothing was compared. A prediction whose figure is missing, or not 0 where the measurement is, is not."""
    if p.get("status") != "ok" or m is None:
        return None
    compared = [(r, field) for r, (field, _) in zip(_ratios(p, m), FIELDS) if _bytes(m.get(field)) is not None]
    return all(r is not None and abs(r - 1) <= WITHIN for r, _ in compared) if compared else None


def _row(p: dict, m: dict | None) -> dict:
    ok = p.get("status") == "ok"
    row = {"case": case_label(p), "predicted held / peak / saved": _figures(p) if ok else p.get("status"),
           "measured held / peak / saved": _figures(m) if m is not None else "not measured"}
    for (field, name), r in zip(FIELDS, _ratios(p, m)):
        row[f"{name} pred/meas"] = "-" if r is None else f"{r:.3f}"
    close = within(p, m)
    row[f"within {WITHIN:.0%}"] = "" if close is None else "yes" if close else "NO"
    row["not predicted, because"] = "" if ok else first_line(p.get("error") or "", 160)
    return row


def worst_by_model(pairs) -> dict[str, tuple[float, str]]:
    """Per model (family/size): the ratio furthest from 1 over held, peak and saved bytes, and the case it came
    from."""
    def distance(r: float) -> float:  # 0.5 and 2 are as far from 1
        return abs(math.log(r)) if r > 0 else math.inf

    worst: dict[str, tuple[float, str]] = {}
    for p, m in pairs:
        if m is None or p.get("status") != "ok":
            continue
        for (field, name), r in zip(FIELDS, _ratios(p, m)):
            model = f"{p['model']}/{p['size']}"
            if r is not None and (model not in worst or distance(r) > distance(worst[model][0])):
                worst[model] = (r, f"{name} of {case_label(p)}")
    return worst


def prediction_blocks(df: pd.DataFrame) -> list[tuple]:
    every = paired(df)
    pairs = [(p, m) for p, m in every if p.get("status") != "not_applicable"]  # no figure to set beside any
    if not every:
        return []
    both = [(p, m) for p, m in pairs if within(p, m) is not None]
    close = sum(1 for p, m in both if within(p, m))
    unpredictable = sum(1 for p, _ in pairs if p.get("status") == "unpredictable")
    left_out = len(every) - len(pairs)
    text = (f"{counted(len(pairs), 'case')} predicted on fake tensors (gradbench predict), {len(both)} of them also measured "
            f"(predict --verify, or a run of the same case): {close} of {len(both)} within {WITHIN:.0%} of the "
            "measurement in held, peak and saved bytes alike. Ratios are predicted / measured, each prediction set "
            "beside the measurement that stands for its case (the newest ok one read)."
            + (f" {counted(unpredictable, 'case')} could not be followed on fake tensors (unpredictable: the reason is in the "
               "table, with the measurement where there is one)." if unpredictable else "")
            + (f" {counted(left_out, 'case')} whose mode does not apply to their step (not_applicable) left out."
               if left_out else ""))
    blocks = [("h2", "Predicted and measured memory"), ("p", text)]
    if pairs:
        table = pd.DataFrame([_row(p, m) for p, m in pairs]).set_index("case")
        if not table["not predicted, because"].any():
            table = table.drop(columns="not predicted, because")
        blocks.append(("table", table))
    worst = worst_by_model(pairs)
    if worst:
        blocks.append(("note", "Worst held, peak or saved ratio per model: " + "; ".join(
            f"{model} {r:.3f} ({where})" for model, (r, where) in worst.items())))
    return blocks
