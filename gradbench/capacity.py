"""`gradbench capacity`: the largest batch each mode fits in a memory budget, measured.

What a case needs at batch B is the pipeline's own figure, ``held_bytes + peak_bytes`` (parameters,
buffers, the input batch, gradients where the step makes them, and the step's peak). A line through a
few small batches (memory passes only, no timing) predicts where the budget is reached; the search
then measures around the prediction until B fits and B + 1 does not. Nothing is extrapolated: the
answer rests on the two measurements either side of it. A batch that runs out of memory (CUDA) is a
"does not fit" point, never a crash.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .text import first_line

PROBES = (1, 2, 4, 8)  # the small batches the line is fitted through (2 to 16 when batch 1 is refused)
MAX_BATCH = 1 << 20  # a case whose memory does not grow with the batch stops here
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'512MiB', '8GiB', '24GB', '1000000' (bytes) -> bytes; ValueError naming the forms it takes. One rule:
    digits with an optional fraction and unit, at least 1 byte and at most 2^63 - 1 (a record's int64)."""
    import decimal

    match = _SIZE.match(str(text))
    size = int(decimal.Decimal(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]) if match else 0
    if not 1 <= size < 2 ** 63:
        raise ValueError(f"bad memory budget {text!r}; give a size from 1 byte to 8 EiB, such as 512MiB, 8GiB or "
                         "24GB (or bytes)")
    return size


@dataclass
class Capacity:
    """The answer for one case: a batch that fits whose next does not (the largest, where memory grows
    with the batch), and the measurements it rests on."""

    budget_bytes: int
    max_batch_size: int  # 0: not even batch 1 fits
    fixed_bytes: float | None
    bytes_per_sample: float | None
    bytes_at_max: int | None
    bytes_at_next: int | None  # None: batch max + 1 ran out of memory, or the search stopped at MAX_BATCH
    measured: dict[int, int | None] = field(default_factory=dict)  # batch -> bytes (None: out of memory)
    capped: bool = False  # memory did not reach the budget by MAX_BATCH


def _line(measured: dict[int, int | None]) -> tuple[float, float] | None:
    """fixed + per_sample x B, least squares through the batches that ran; None with fewer than two."""
    points = sorted((b, v) for b, v in measured.items() if v is not None)
    if len(points) < 2:
        return None
    per_sample, fixed = np.polyfit([b for b, _ in points], [v for _, v in points], 1)
    return float(fixed), float(per_sample)


def small_line(measured: dict[int, int | None]) -> tuple[float, float] | None:
    """fixed + per_sample x B through the small batches (the probes, 2 to 16 when batch 1 was refused):
    the prediction, and the bytes per sample reported."""
    return _line({b: v for b, v in measured.items() if b in (*PROBES, *(2 * p for p in PROBES))})


def _predict(measured: dict[int, int | None], low: int, high: int | None, budget_bytes: int,
             probed: tuple[float, float] | None) -> int | None:
    """Where the budget is reached: on the probes' line at first, then between the two measurements
    around the answer, or, with none above it yet, on the secant through the two largest that fit."""
    if probed and probed[1] > 0:
        return math.floor((budget_bytes - probed[0]) / probed[1])
    if measured.get(high) is not None and measured[high] > measured[low]:
        return low + math.floor((budget_bytes - measured[low]) * (high - low) / (measured[high] - measured[low]))
    if high is None:
        fitting = sorted(b for b, v in measured.items() if v is not None and v <= budget_bytes)[-2:]
        if len(fitting) == 2 and measured[fitting[1]] > measured[fitting[0]]:
            a, b = fitting
            return b + math.floor((budget_bytes - measured[b]) * (b - a) / (measured[b] - measured[a]))
    return None


def find_capacity(needed: Callable[[int], int | None], budget_bytes: int, probes=PROBES,
                  max_batch: int = MAX_BATCH, guess: int | None = None) -> Capacity:
    """The largest B with ``needed(B) <= budget`` and ``needed(B + 1) > budget`` (or out of memory).

    ``needed(B)``: the bytes the case needs at batch B, None when it ran out of memory. It is called
    once per batch size; the search is bisection steered by the fitted line's prediction.
    ``guess``: where the answer is expected (`gradbench predict`'s): B and B + 1 are measured first, and
    when B fits and B + 1 does not, that is the answer, from two measurements; else the search goes on.
    """
    measured: dict[int, int | None] = {}

    def fits(batch: int) -> bool:
        if batch not in measured:
            measured[batch] = needed(batch)
        value = measured[batch]
        return value is not None and value <= budget_bytes

    if guess is not None and 1 <= guess < max_batch:
        # B fits and B + 1 does not; or, a prediction one too high (a kernel's own buffers it cannot see), B
        # does not and B - 1 does: either way two measurements bracket the answer
        answer = (guess if not fits(guess + 1) else None) if fits(guess) else \
            (guess - 1 if guess > 1 and fits(guess - 1) else None)
        if answer is not None:  # no small batches measured: no line (null), as the report reads it
            line = small_line(measured)
            return Capacity(budget_bytes, answer, line[0] if line else None, line[1] if line else None,
                            measured[answer], measured[answer + 1], measured)

    low, high = 0, None  # the largest batch known to fit, the smallest known not to (no batch between)
    for batch in probes:
        if fits(batch):
            low = batch
        else:
            high = batch
            break
    if low == 0:
        return Capacity(budget_bytes, 0, None, None, None, measured.get(probes[0]), measured)
    probed = small_line(measured)  # the prediction, and (at the end) what is reported
    first, bisect = True, False
    while (high is None and low < max_batch) or (high is not None and high - low > 1):
        upper = high if high is not None else max_batch + 1
        width = upper - low
        # after a step that crept (memory far from linear) there is no prediction: halve instead
        guess = None if bisect else _predict(measured, low, high, budget_bytes, probed if first else None)
        first = False
        leap = guess is not None and high is None and guess > 4 * low
        if leap:
            guess = 4 * low  # never leap far past what was measured: RAM is not probed to exhaustion
        if guess is None or not low < guess < upper:  # no usable prediction: bisect, or double upwards
            guess = (low + upper) // 2 if high is not None else min(low * 2, max_batch)
        # measure the prediction and its neighbour: when the prediction is right, that brackets the answer
        fitted = fits(guess)
        # a leap is a step on the way, not a prediction of the answer: its neighbour says nothing
        neighbour = low if leap else guess + 1 if fitted else guess - 1
        if fitted:
            low = guess
        else:
            high = guess
        if low < neighbour < (high if high is not None else max_batch + 1):
            if fits(neighbour):
                low = neighbour
            else:
                high = neighbour
        # a step that did not halve the bracket is followed by a bisection: the search stays logarithmic
        bisect = high is not None and not bisect and (high - low) > width // 2
    line = small_line(measured)
    return Capacity(
        budget_bytes, low, line[0] if line else None, line[1] if line else None, measured.get(low),
        measured.get(high) if high is not None else None, measured, capped=high is None,
    )


def case_needs(model: str, size: str, device: str, dtype: str, mode: str, step: str, seed: int = 0,
               run_id: str | None = None, seq_len: int | None = None, image_size: int | None = None):
    """needed(B) for find_capacity: one case's held_bytes + peak_bytes at batch B, from the pipeline's
    memory passes (None: out of memory). Other failures (a model that refuses the batch) propagate.
    ``needed.records`` keeps the record of every batch measured, out-of-memory ones included."""
    from .case import Case
    from .session import Session, failed

    records: dict[int, dict] = {}
    session = Session(run_id)

    def needed(batch: int) -> int | None:
        case = Case(model, size, batch, device, dtype, mode, step, seed, seq_len=seq_len,
                    image_size=image_size).validate()
        try:
            with session.prepared(case, memory_only=True) as prepared:
                record = prepared.record
        except Exception as exc:
            status, message = failed(exc)
            if status != "oom":
                raise
            records[batch] = session.failure(case, status, message)
            return None
        finally:
            session.release()  # each batch's model and input freed before the next (and before the timing)
        records[batch] = {**record, "status": "ok"}
        return int(record["held_bytes"] + record["peak_bytes"])

    needed.records = records  # batch -> the pipeline's record at that batch
    return needed


def predicted_needs(model: str, size: str, device: str, dtype: str, mode: str, step: str, seed: int = 0,
                    seq_len: int | None = None, image_size: int | None = None, predictor=None,
                    autocast: str = "none"):
    """needed(B) for find_capacity from `gradbench predict`'s figures (fake tensors: nothing allocated).
    A batch the prediction cannot follow raises predict.Unpredictable; one that fails otherwise raises
    ValueError with the record's message."""
    from .case import Case
    from .predict import Predictor, Unpredictable

    predictor = predictor or Predictor()
    records: dict[int, dict] = {}

    def needed(batch: int) -> int:
        case = Case(model, size, batch, device, dtype, mode, step, seed, seq_len=seq_len, image_size=image_size,
                    autocast=autocast).validate(here=False)
        record = predictor.predict(case)
        predictor.forget(case)  # each batch's fake workload dropped: a search visits many
        if record["status"] == "unpredictable":
            raise Unpredictable(record["error"])
        if record["status"] != "ok":  # as case_needs: a refused batch raises, and is not among the records
            raise ValueError(f"batch {batch}: {record['status']}: {record['error']}")
        records[batch] = record
        return int(record["held_bytes"] + record["peak_bytes"])

    needed.records = records  # as case_needs': batch -> the prediction at that batch
    return needed


def _search(needed, budget_bytes: int, guess: int | None = None) -> tuple["Capacity", str | None]:
    """find_capacity, and where batch 1 is refused (BatchNorm in a train-flag mode), from batch 2, saying so."""
    try:
        return find_capacity(needed, budget_bytes, guess=guess), None
    except Exception as exc:
        if needed.records:  # it failed past batch 1: nothing to retry
            raise
        note = f"batch 1 refused, probed from 2: {type(exc).__name__}: {first_line(exc, 10_000)}"
        return find_capacity(needed, budget_bytes, probes=tuple(2 * p for p in PROBES)), note


def capacity_of(model: str, size: str, device: str, dtype: str, mode: str, step: str, budget_bytes: int,
                time_it: bool = False, max_time_s: float = 2.0, write=None, run_id: str | None = None,
                seq_len: int | None = None, image_size: int | None = None) -> dict:
    """One case's answer as a JSON-ready object (the fields of `gradbench capacity --format json`).

    ``write(record)``, if given, receives the record of every batch measured (kind capacity_probe, source
    "capacity", with the budget and the answer), and with ``time_it`` the timed record at the answer."""
    from .case import Case
    from .record import new_run_id
    from .session import not_applicable

    run_id = run_id or new_run_id()

    out = dict(model=model, size=size, mode=mode, step=step, device=device, dtype=dtype,
               memory_budget_bytes=budget_bytes, max_batch_size=None, predicted_max_batch_size=None, fixed_bytes=None, bytes_per_sample=None,
               bytes_at_max=None, bytes_at_next=None, samples_per_s=None, time_trusted=None, capped=False,
               measured_batches=[], note=None, error=None)
    first = Case(model, size, 1, device, dtype, mode, step, seq_len=seq_len, image_size=image_size)
    if first.seq_len is not None or first.image_size is not None:  # a family's default, or the axis given
        out.update(seq_len=first.seq_len, image_size=first.image_size)
    reason = not_applicable(first)
    if reason:
        out["error"] = reason
        return out
    guess, out["predicted_max_batch_size"], predicted_note = _predicted_answer(
        model, size, device, dtype, mode, step, budget_bytes, first.seq_len, first.image_size)
    needed = case_needs(model, size, device, dtype, mode, step, run_id=run_id, seq_len=first.seq_len,
                        image_size=first.image_size)
    try:
        found, out["note"] = _search(needed, budget_bytes, guess)
        out["note"] = "; ".join(n for n in (out["note"], predicted_note) if n) or None
    except Exception as exc:  # the model refused a batch size: a result, and the other cases go on
        out["error"] = f"{type(exc).__name__}: {exc}".strip()
        return out
    timed = None
    out.update(max_batch_size=found.max_batch_size, fixed_bytes=found.fixed_bytes,
               bytes_per_sample=found.bytes_per_sample, bytes_at_max=found.bytes_at_max,
               bytes_at_next=found.bytes_at_next, capped=found.capped, measured_batches=sorted(found.measured))
    if found.max_batch_size == 0:
        first = min(found.measured)
        out["error"] = (f"batch {first} does not fit: it needs {found.measured[first]} bytes, the budget is "
                        f"{budget_bytes}" if found.measured[first] is not None else
                        f"batch {first} ran out of memory")
    elif time_it:
        from .session import run_case

        record = timed = run_case(model, size, found.max_batch_size, device, dtype, mode, step,
                                  max_time_s=max_time_s, run_id=run_id, seq_len=first.seq_len,
                                  image_size=first.image_size)
        if record["status"] == "ok":
            out.update(samples_per_s=found.max_batch_size / record["time_median_s"],
                       time_trusted=record["time_trusted"])
        else:
            out["error"] = f"timing at batch {found.max_batch_size}: {record['status']}: {record['error']}"
    if write is not None:
        for record in [*needed.records.values(), *([timed] if timed else [])]:
            # kind says what the record is; source "capacity" stays, as readers before kind tell them by it
            write({**record, "source": "capacity", "kind": "capacity_probe", "memory_budget_bytes": budget_bytes,
                   "capacity_batch_size": found.max_batch_size})
    return out


def _predicted_answer(model, size, device, dtype, mode, step, budget_bytes, seq_len, image_size):
    """(where the measured search starts, the predicted answer, a note): the prediction's own largest batch,
    found on fake tensors; None where they cannot follow the case (the note says why)."""
    needed = predicted_needs(model, size, device, dtype, mode, step, seq_len=seq_len, image_size=image_size)
    try:
        predicted, _ = _search(needed, budget_bytes)
    except Exception as exc:  # noqa: BLE001 - unpredictable, or refused: the measured search stands alone
        return None, None, f"no prediction to start from ({first_line(exc, 160)})"
    if predicted.capped or predicted.max_batch_size == 0:
        return None, predicted.max_batch_size, None
    return predicted.max_batch_size, predicted.max_batch_size, None


def default_budget(device: str) -> int:
    """CUDA: the device's free memory now. CPU has no safe default: probing RAM exhaustion is not an answer."""
    if not str(device).startswith("cuda"):
        raise ValueError(f"--memory-budget is required on {device} (say 512MiB, 8GiB or 24GB); only CUDA "
                         "defaults to the device's free memory")
    import torch

    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def capacity_table(rows: list[dict]):
    """mode -> max batch, bytes per sample and the ratio to train's batch, per model/size/step/device/dtype."""
    import pandas as pd

    from .record import case_label
    from .units import human_bytes, ratio_text

    shown = []
    for r in rows:
        same = ("model", "size", "seq_len", "image_size", "step", "device", "dtype", "memory_budget_bytes")
        group = [x for x in rows if all(x.get(k) == r.get(k) for k in same)]
        train = next((x for x in group if x["mode"] == "train" and x["max_batch_size"]), None)
        line = {
            "case": case_label({**r, "batch_size": 0}, omit=("batch_size", "mode")), "mode": r["mode"],
            **({"budget": human_bytes(r["memory_budget_bytes"])}
               if len({x["memory_budget_bytes"] for x in rows}) > 1 else {}),
            "max batch": "-" if r["max_batch_size"] is None else
            f"{r['max_batch_size']}{'+' if r['capped'] else ''}",
            "bytes/sample": "-" if r["bytes_per_sample"] is None else human_bytes(r["bytes_per_sample"]),
            "fixed": "-" if r["fixed_bytes"] is None else human_bytes(r["fixed_bytes"]),
            "x train": ratio_text(r['max_batch_size'] / train['max_batch_size']) if train and r["max_batch_size"]
            else "-",
        }
        if any(x["samples_per_s"] is not None for x in rows):
            line["samples/s"] = "-" if r["samples_per_s"] is None else \
                f"{r['samples_per_s']:,.0f}{'' if r['time_trusted'] is not False else chr(0x2020)}"
            line["samples/s x train"] = (ratio_text(r['samples_per_s'] / train['samples_per_s'])
                                         if train and train["samples_per_s"] and r["samples_per_s"] else "-")
        line["note"] = r["error"] or r.get("note") or ""
        shown.append(line)
    return pd.DataFrame(shown).set_index("case")


def measure_capacities(cases: list[tuple], budgets: dict[str, int], time_it: bool = False, max_time_s: float = 2.0,
                       out: str | None = None) -> tuple[list[dict], int]:
    """Every case's answer (``(model, size, device, dtype, mode, step)``, and optionally ``seq_len, image_size``
    after them, in the budget of its device), in order,
    with a progress line on stderr per case; with ``out``, the record of every batch measured appended to that
    JSONL file as each case ends, so that a search stopped halfway keeps what it measured.
    Returns the answers and the number of records written."""
    import contextlib
    import sys

    from .errors import cannot_write
    from .record import new_run_id
    from .storage import JsonlWriter

    rows, run_id = [], new_run_id()
    try:
        opened = JsonlWriter(out, then="search again (capacity has no --resume; a report reads the newest search)") \
            if out else contextlib.nullcontext()
    except OSError as exc:
        raise cannot_write("--out", out, exc) from None
    with opened as writer:
        for i, (m, s, d, t, mode, step, *axes) in enumerate(cases, 1):
            seq_len, image_size = (*axes, None, None)[:2]
            shown = "".join(f" {text.format(v)}" for v, text in ((seq_len, "s{}"), (image_size, "{}px")) if v)
            print(f"gradbench: capacity {i}/{len(cases)}: {m}/{s}{shown} {d} {t} {mode} {step} in {budgets[d]} bytes",
                  file=sys.stderr)
            rows.append(capacity_of(m, s, d, t, mode, step, budgets[d], time_it, max_time_s, run_id=run_id,
                                    write=writer.write if writer else None, seq_len=seq_len, image_size=image_size))
    return rows, writer.written if writer else 0
