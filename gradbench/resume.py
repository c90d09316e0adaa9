"""--resume: which of a sweep's cases a results file already holds, and whether it holds them measured
under the same settings. A results file is one experiment: a case recorded under another seed, thread
count, time cap or cudnn setting is not the same measurement, so resuming with other settings refuses."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import BadInput, option
from .record import case_key
from .schema import DONE_STATUSES, MEASUREMENT_SETTINGS


@dataclass
class Previous:
    """What the results file already holds of this sweep, as (case_key, repeat) pairs."""

    done: set = field(default_factory=set)  # ok or not_applicable: not measured again
    # ok but untrusted, with the attempts made so far: (case_key, repeat, attempts), measured again with
    # --retry-untrusted while attempts < 1 + N
    untrusted: set = field(default_factory=set)
    skipped: int = 0  # of the sweep's cases x repeats
    warnings: list = field(default_factory=list)


def settings_of(cases, threads: int | None, this_machine: bool = True) -> dict:
    """The MEASUREMENT_SETTINGS a sweep's records will carry (cudnn_benchmark only where CUDA runs).
    ``this_machine``: the records are measured here, so torch's default thread count is known; on
    Slurm nodes it is not (None: not checked)."""
    import torch

    case = cases[0]
    cuda = any(c.device.startswith("cuda") for c in cases)
    threads = threads or (torch.get_num_threads() if this_machine else None)
    compiled = any(c.compile != "none" for c in cases)
    return {"seed": case.seed, "threads": threads, "max_time_s": case.max_time_s,
            "cudnn_benchmark": case.cudnn_benchmark if cuda else None,
            "compile_cold": case.compile_cold if compiled else None,
            "energy_sampling": case.energy_sampling if cuda else None,
            "head": case.head}


def check_same_settings(out: str, records: list[dict], wanted: dict) -> None:
    """BadInput, in one line, if ok records in ``out`` were measured under another value of a setting.
    Records that did not record a setting (older files; cudnn_benchmark on cpu) are not held against it."""
    for key in MEASUREMENT_SETTINGS:
        value = wanted.get(key)
        if value is None:
            continue
        found = sorted({r.get(key) for r in records if r.get("status") == "ok" and r.get(key) is not None}, key=str)
        if found and found != [value]:
            raise BadInput(f"cannot --resume {out!r} with {option(key.removesuffix('_s'))} {value}: its records were "
                           f"measured with {key} {', '.join(map(str, found))}; resume with the same settings or "
                           "choose another --out")


def previous_results(out: str, cases, repeat: int, threads: int | None, this_machine: bool = True) -> Previous:
    """Read ``out`` for --resume (absent: nothing done yet)."""
    from .dataset import cases as case_records, standing
    from .reading import ResultsFileError
    from .results import read_jsonl
    from .plan import needs_retry as untrusted

    previous = Previous()
    if not os.path.exists(out) or not cases:
        return previous
    try:
        records, previous.warnings = read_jsonl(out)
    except ResultsFileError as exc:
        raise BadInput(f"cannot --resume: {exc}") from None
    records = case_records(records)  # a capacity search's probes are not cases
    check_same_settings(out, records, settings_of(cases, threads, this_machine))
    previous.done = {(case_key(r), r.get("repeat") or 1) for r in records if r.get("status") in DONE_STATUSES}
    attempts: dict[tuple, int] = {}
    for r in records:
        pair = (case_key(r), r.get("repeat") or 1)
        attempts[pair] = max(attempts.get(pair, 1), r.get("attempt") or 1)
    previous.untrusted = {(case_key(r), r.get("repeat") or 1, attempts[(case_key(r), r.get("repeat") or 1)])
                          for r in standing(records) if untrusted(r)}
    previous.skipped = sum((case_key(c.identity()), k) in previous.done for c in cases for k in range(1, repeat + 1))
    return previous
