"""Reading results: gradbench JSONL into records of the current format, each checked before it is used,
and one entry point (read_any, load) that reads any supported source (importers/ read asv and
pytest-benchmark) into one data set. Every reader's values become Records here (``checked``): frozen,
each field of its kind; what reading adds (the trust judged on reading, the source, the file read)
makes a new Record, never changes one. Reading never unpickles anything. Fields a source did not
record are null; unknown fields of older files are kept. Writing is storage.py's job."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from .case import DEVICES, STEPS, validate_device
from .compiled import AUTOCAST_SETTINGS, COMPILE_SETTINGS
from .dataset import kind_of, standing, standing_key
from .frame import to_frame
from .importers.asv import read_asv_results
from .importers.pytest_benchmark import read_pytest_benchmark
from .migrate import TooNew, migrated
from .models import NAME_RULE, SIZE_RULE, plain_model_name, plain_size_name
from .reading import ResultsFileError, loads, read_text
from .record import InvalidRecord, Record, short_repr
from .schema import FORMAT_VERSION
from .measure.stats import rel_halfwidth, samples_rel_halfwidth
from .measure.trust import distrust_reasons
from .modes import MODES
from .text import terminal_text
from .workload import DTYPES


def is_record(obj) -> bool:
    return isinstance(obj, dict) and all(k in obj for k in ("model", "mode", "step", "status"))


def _declares_a_newer_format(obj) -> bool:
    """A newer gradbench's record, whatever fields that format has (it may have renamed what is_record looks for)."""
    version = obj.get("format_version") if isinstance(obj, dict) else None
    return isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION


def unusable(record: Mapping) -> list[str]:
    """What no case could have had, of fields each of its kind: an identity no gradbench run could have had
    (identity_errors), a time no step took (time_errors), or a capacity search's record without the budget
    and answer every one of them carries (the report places it by them)."""
    found = identity_errors(record) + time_errors(record)
    if kind_of(record) == "capacity_probe" and (record.get("memory_budget_bytes") is None
                                                 or record.get("capacity_batch_size") is None):
        found.append("a capacity record without memory_budget_bytes and capacity_batch_size")
    if kind_of(record) == "ab_trial" and (record.get("ab_id") is None or record.get("ab_round") is None
                                          or record.get("ab_side") not in ("base", "candidate")):
        found.append("an A/B trial without ab_id, ab_round and ab_side base or candidate")
    return found


def checked(values: Mapping) -> tuple[Record | None, list[str]]:
    """Values a reader read, in the current format, as a Record (None if not), and why they cannot be used:
    a field not of its kind or range, or without format_version or kind (Record.read refuses those), then
    what ``unusable`` finds."""
    try:
        record = Record.read(values)
    except InvalidRecord as exc:
        return None, exc.problems
    found = unusable(record)
    return (None if found else record), found


def time_errors(record: Mapping) -> list[str]:
    """A median at or below 0 s, or a raw sample below 0 s: no step takes no time, and every rate (flops/s,
    samples/s) and ratio divides by the median."""
    median, samples = record.get("time_median_s"), record.get("samples_s")
    found = [f"time_median_s={short_repr(median)} is not above 0"] if _is_number(median) and median <= 0 else []
    below = [v for v in samples if _is_number(v) and v < 0] if isinstance(samples, (list, tuple)) else []
    return found + ([f"samples_s holds {short_repr(below[0])}, below 0"] if below else [])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Identity fields with a closed set of values, and those every table and figure is keyed by (never null;
# compile and autocast may be: IDENTITY_DEFAULTS says what their null means).
CLOSED_IDENTITY = {"dtype": tuple(DTYPES), "mode": tuple(MODES), "step": STEPS, "compile": COMPILE_SETTINGS,
                   "autocast": AUTOCAST_SETTINGS}
REQUIRED_IDENTITY = ("model", "size", "batch_size", "device", "dtype", "mode", "step")


def identity_errors(record: Mapping) -> list[str]:
    """Identity values a file holds that no case could have had. They key every table and name the
    report's figure files, and a results file may come from anyone: a dtype 'x/../../tmp/owned' stops
    here. Model and size are open (user models name their own) but must be plain names (models.py)."""
    found = [f"{key} is null" for key in REQUIRED_IDENTITY if record.get(key) is None]
    for key, valid in CLOSED_IDENTITY.items():
        if isinstance(record.get(key), str) and record[key] not in valid:
            found.append(f"{key}={short_repr(record[key])} is not one of {', '.join(valid)}")
    device, model, size = (record.get(k) for k in ("device", "model", "size"))
    if isinstance(device, str):
        try:
            validate_device(device, here=False)
        except ValueError:
            found.append(f"device={short_repr(device)} is not {', '.join(DEVICES)} or cuda:N")
    if isinstance(model, str) and not plain_model_name(model):
        found.append(f"model={short_repr(model)} is not a model name ({NAME_RULE})")
    if isinstance(size, str) and not plain_size_name(size):
        found.append(f"size={short_repr(size)} is not a size name ({SIZE_RULE})")
    return found


def _skipped(name: str, unit: str, skipped: list[tuple], what: str) -> str:
    """'F:3: 3 record(s) WHAT skipped (and lines 6, 7)': how many of a file's records were skipped, and where
    (the first, then up to five more)."""
    where = f"{name}:{skipped[0][0]}" if unit == "line" else f"{name}: {unit} {skipped[0][0]}"
    more = f" (and {unit}s {', '.join(str(n) for n, _ in skipped[1:6])}{', ...' if len(skipped) > 6 else ''})" \
        if len(skipped) > 1 else ""
    return f"{where}: {len(skipped)} record(s) {what} skipped{more}"


def _skipped_warning(name: str, unit: str, mistyped: list[tuple[int, str]]) -> str:
    """One warning for a file's skipped records: 'F:3: 3 record(s) ... (and lines 6, 7); first: ...'."""
    return f"{_skipped(name, unit, mistyped, 'with wrong-typed fields')}; first: {mistyped[0][1]}"


def _too_new_warning(name: str, too_new: list[tuple[int, int]]) -> str:
    """One warning for a file's records of a newer format: how many and which, and what this gradbench reads."""
    newest = max(v for _, v in too_new)
    return (f"{_skipped(name, 'line', too_new, f'of format_version up to {short_repr(newest)}')}: this gradbench "
            f"reads formats up to {FORMAT_VERSION} (a newer gradbench wrote them; upgrade to read them)")


def _all_skipped(path, unit: str, mistyped: list[tuple[int, str]]) -> ResultsFileError:
    """A file none of whose records can be used: said as such, not as an empty file or inputs that agree."""
    return ResultsFileError(f"all {len(mistyped)} records in {str(path)!r} skipped: {unit} {mistyped[0][0]}: "
                            f"{mistyped[0][1]}")


def _format_version_as_written(line: str, obj):
    """``obj`` with the format_version its line holds: the readers' JSON reads a non-finite number as null
    (1e999, NaN), which in format_version names no format, and must not pass for a record without one."""
    if isinstance(obj, dict) and "format_version" in obj and obj["format_version"] is None:
        written = loads(line, ours=False).get("format_version")
        if written is not None:
            return {**obj, "format_version": written}
    return obj


def read_jsonl(path) -> tuple[list[Record], list[str]]:
    """Records of a gradbench JSONL file, and warnings for lines that could not be used.

    Records come out in the current format (migrate.py), whatever gradbench wrote them. A line cut short
    by a kill mid-write is skipped with a warning, never an error; so is a record whose fields have the
    wrong types (one warning per file, naming the lines), and one of a format newer than this gradbench
    reads (another). An empty file is a valid, empty result (a shard that received no cases); a file with
    lines but no gradbench record at all raises ResultsFileError, and so does one whose every record is
    skipped.
    """
    records: list[Record] = []
    warnings: list[str] = []
    mistyped: list[tuple[int, str]] = []
    too_new: list[tuple[int, int]] = []
    bad = 0
    name = os.path.basename(str(path))
    try:
        lines = read_text(path).split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"cannot read results file {str(path)!r}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = _format_version_as_written(line, loads(line))
        except ValueError:  # not JSON, or an integer of more digits than Python converts
            obj = None
        if is_record(obj) or _declares_a_newer_format(obj):
            try:
                obj = migrated(obj)
            except TooNew as exc:
                too_new.append((number, exc.version))
                continue
            except ValueError as exc:  # a format_version that names no format
                mistyped.append((number, str(exc)))
                continue
            record, wrong = checked(obj)
            if wrong:
                mistyped.append((number, wrong[0]))
            else:
                records.append(record)
        else:
            bad += 1
            last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == "")
            warnings.append(
                f"{name}:{number}: "
                + ("truncated last line ignored (killed mid-write?)" if last else "not a gradbench record, ignored")
            )
    if (mistyped or too_new) and not records:
        raise _all_skipped(path, "line", sorted(mistyped + [(n, str(TooNew(v))) for n, v in too_new]))
    if mistyped:
        warnings.append(_skipped_warning(name, "line", mistyped))
    if too_new:
        warnings.append(_too_new_warning(name, too_new))
    if bad and not records and not mistyped:
        raise ResultsFileError(f"{str(path)!r} is not a gradbench JSONL results file (no line is a gradbench record)")
    return records, warnings

SINGLE_SAMPLE = ("one sample (asv --quick, or a single round): one call, with no spread to judge it by (before "
                 "gradbench 0.3.1, a cold first call with its lazy set-up), not a timing (judged on reading)")


def judged_on_reading(record: Record) -> Record:
    """A record without a trust verdict (asv, pytest-benchmark, files from before gradbench 0.3) is
    judged on what it still allows: the precision of its median, from its stored interval or raw
    samples. Contention was not measured, so a precise one stays unjudged (null), never trusted.
    The record judged untrusted is a new one; any other is returned as it is."""
    if record["status"] != "ok" or record["time_trusted"] is not None or record["time_converged"]:
        return record
    if record["n_samples"] == 1:  # asv --quick (or one pytest-benchmark round): one call, no spread
        return record.replace(time_trusted=False, time_distrust=SINGLE_SAMPLE)
    med, low, high = (record[k] for k in ("time_median_s", "time_ci_low_s", "time_ci_high_s"))
    if all(isinstance(v, (int, float)) for v in (med, low, high)):
        width = rel_halfwidth(med, low, high)
    elif record["samples_s"] is not None and len(record["samples_s"]) >= 3:
        width = samples_rel_halfwidth(record["samples_s"])
    else:
        return record
    reasons = distrust_reasons(width, False, None) if width is not None else []
    return record.replace(time_trusted=False, time_distrust=reasons[0] + " (judged on reading)") if reasons else record


def read_gradbench_jsonl(path) -> tuple[list[Record], list[str]]:
    records, warnings = read_jsonl(path)
    # before choosing: an imprecise old timing must not outrank a newer one
    records = [judged_on_reading(r if r["source"] else r.replace(source="gradbench")) for r in records]
    return standing(records), warnings + _several_machines_warning(os.path.basename(str(path)), records)
    # a file holds every attempt; dataset.py says which stand


def _several_machines_warning(name: str, records: list[Record]) -> list[str]:
    """One warning where one file holds a case measured on several machines (`cat a.jsonl b.jsonl`): its
    records compete as attempts, one stands, and the other machines' measurements of it are not read."""
    machines: dict[tuple, set] = {}
    for r in (r for r in records if r["status"] == "ok"):  # a failure retried elsewhere (Slurm) lost nothing
        machines.setdefault(standing_key(r), set()).add(str(r["machine"] or "?"))
    several = [found for found in machines.values() if len(found) > 1]
    if not several:
        return []
    names = ", ".join(sorted(set().union(*several)))
    return [f"{name}: {len(several)} case(s) measured on several machines ({names[:200]}) in one file: "
            "one record of each stands (the newest of the best rank), the others are not read; give each machine's records a file of its "
            "own (gradbench report a.jsonl b.jsonl reads them side by side)"]

def read_any(path) -> tuple[list[Record], list[str]]:
    """Records from one path of any supported kind, and warnings; ResultsFileError if it is none of them
    (a foreign file whose structure is not what its kind promises, too)."""
    path = str(path)
    if not os.path.exists(path):
        raise ResultsFileError(f"{path!r} does not exist")
    try:
        records, warnings = _read_by_kind(path)
    except ResultsFileError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError, SyntaxError) as exc:
        raise ResultsFileError(f"{path!r} is malformed: {type(exc).__name__}: {exc}") from None
    except OSError as exc:  # a file in an asv folder that cannot be read
        raise ResultsFileError(f"cannot read {path!r}: {exc}") from None
    return [r.replace(source_file=path) for r in records], warnings


def _imported(path: str, drafts: list[dict], warnings: list[str]) -> tuple[list[Record], list[str]]:
    """An importer's records: checked (a record that cannot be used is skipped, one warning naming them;
    JSONL lines are checked as read, with their line numbers), then judged on reading (read_gradbench_jsonl
    judges its own, before choosing)."""
    found = [checked(values) for values in drafts]
    mistyped = [(i, wrong[0]) for i, (_, wrong) in enumerate(found, 1) if wrong]
    if mistyped and len(mistyped) == len(drafts):
        raise _all_skipped(path, "record", mistyped)
    if mistyped:
        warnings = [*warnings, _skipped_warning(os.path.basename(path), "record", mistyped)]
    return [judged_on_reading(record) for record, wrong in found if not wrong], warnings


def _read_by_kind(path: str) -> tuple[list[Record], list[str]]:
    if os.path.isdir(path):
        warnings: list[str] = []
        return _imported(path, read_asv_results(path, warnings), warnings)
    if path.endswith(".jsonl"):
        records, warnings = read_gradbench_jsonl(path)
    else:
        try:
            text = read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultsFileError(f"cannot read {path!r}: {exc}") from None
        if not text.strip():  # an empty result (a shard that got no case), whatever its name
            return [], []
        try:
            data = loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and "benchmarks" in data and "machine_info" in data:
            records, warnings = _imported(path, read_pytest_benchmark(path, data), [])
        elif isinstance(data, dict) and "result_columns" in data:
            warnings = []
            records, warnings = _imported(path, read_asv_results(os.path.dirname(os.path.abspath(path)), warnings),
                                          warnings)
        else:  # perhaps JSONL under another name
            records, warnings = read_gradbench_jsonl(path)
    return records, warnings


def load(paths, warn=None):
    """One tidy DataFrame (the record schema's columns) from gradbench JSONL files, asv result
    folders and pytest-benchmark JSON files; several files together are one data set."""

    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    records: list[Record] = []
    seen: set[tuple] = set()
    for path in paths:
        try:
            stat = os.stat(path)
            same = (stat.st_dev, stat.st_ino)  # one file by any name: ./x, a symlink, a hard link
        except OSError:
            same = (None, os.path.realpath(str(path)))
        if same in seen:  # a file named twice is read once
            continue
        seen.add(same)
        found, warnings = read_any(path)
        for w in warnings:
            (warn or (lambda m: print(f"gradbench: warning: {terminal_text(m)}", file=sys.stderr)))(w)
        records.extend(found)
    if not records:
        names = ", ".join(repr(str(p)) for p in paths)
        raise ResultsFileError(f"no records in {names} (empty files: shards that received no cases?)")
    return to_frame(records)
