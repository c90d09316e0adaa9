"""The JSONL store, and readers that turn every source (gradbench JSONL, asv result folders,
pytest-benchmark JSON) into records of the one schema (record.py), then into a DataFrame.

Reading never unpickles anything. Fields a source did not record are null; unknown fields of
older files are kept.
"""
from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import errno
import glob
import itertools
import json
import math
import os
import sys

from .case import DEVICES, STEPS, validate_device
from .compiled import AUTOCAST_SETTINGS, COMPILE_SETTINGS
from .dataset import kind_of, standing
from .errors import WriteFailed
from .inputs import NotRegularFile, read_regular
from .migrate import TooNew, migrated
from .models import NAME_RULE, SIZE_RULE, plain_model_name, plain_size_name
from .record import (FORMAT_VERSION, IDENTITY_DEFAULTS, RECORD_FIELDS, SCHEMA, completed, finite_or_none,
                     kind_errors, new_record, short_repr, type_errors)
from .measure.stats import rel_halfwidth, samples_rel_halfwidth
from .measure.trust import distrust_reasons
from .modes import MODES
from .text import terminal_text
from .workload import DTYPES


class ResultsFileError(ValueError):
    """A results file that is not gradbench JSONL (or cannot be read)."""


def to_json_line(record: dict) -> str:
    """One record as a JSON line: declared fields of the declared kinds only, NaN and infinity as null."""
    clean = finite_or_none(record)
    problems = type_errors(clean)
    if problems:
        raise TypeError(f"record breaks the schema (gradbench/record.py): {'; '.join(problems)}")
    return json.dumps(clean, allow_nan=False)


def is_record(obj) -> bool:
    return isinstance(obj, dict) and all(k in obj for k in ("model", "mode", "step", "status"))


def read_text(path) -> str:
    """A results file's text (UTF-8); a named pipe, a device or a socket is refused (ResultsFileError)."""
    try:
        return read_regular(path).decode("utf-8")
    except NotRegularFile as exc:
        raise ResultsFileError(f"{exc}; give gradbench JSONL files, asv result folders or pytest-benchmark JSON "
                               "files") from None


def _null_constant(name: str):
    return None  # a bare NaN or Infinity another tool wrote: JSON has neither; read as null, like ours


def _finite_or_null(text: str):
    value = float(text)
    return value if math.isfinite(value) else None  # 1e999 overflows to infinity: null too


def loads(text: str, ours: bool = True):
    """JSON as the readers take it (``ours``: a bare NaN or Infinity, or a float overflowing to one, read as
    null). JSON nested deeper than Python recurses ('[' * 100000) is a ValueError, as any malformed JSON."""
    try:
        return json.loads(text, parse_constant=_null_constant, parse_float=_finite_or_null) if ours else \
            json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def problems(record: dict) -> list[str]:
    """Why a record read from a file cannot be used (empty when it can): fields of the wrong kind or
    range, an identity no gradbench run could have had (identity_errors), a time no step took (time_errors),
    or a capacity search's record
    without the budget and answer every one of them carries (the report places it by them)."""
    found = kind_errors(record) + identity_errors(record) + time_errors(record)
    if kind_of(record) == "capacity_probe" and (record.get("memory_budget_bytes") is None
                                                 or record.get("capacity_batch_size") is None):
        found.append("a capacity record without memory_budget_bytes and capacity_batch_size")
    return found


def time_errors(record: dict) -> list[str]:
    """A median at or below 0 s, or a raw sample below 0 s: no step takes no time, and every rate (flops/s,
    samples/s) and ratio divides by the median."""
    median, samples = record.get("time_median_s"), record.get("samples_s")
    found = [f"time_median_s={short_repr(median)} is not above 0"] if _is_number(median) and median <= 0 else []
    below = [v for v in samples if _is_number(v) and v < 0] if isinstance(samples, list) else []
    return found + ([f"samples_s holds {short_repr(below[0])}, below 0"] if below else [])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Identity fields with a closed set of values, and those every table and figure is keyed by (never null;
# compile and autocast may be: IDENTITY_DEFAULTS says what their null means).
CLOSED_IDENTITY = {"dtype": tuple(DTYPES), "mode": tuple(MODES), "step": STEPS, "compile": COMPILE_SETTINGS,
                   "autocast": AUTOCAST_SETTINGS}
REQUIRED_IDENTITY = ("model", "size", "batch_size", "device", "dtype", "mode", "step")


def identity_errors(record: dict) -> list[str]:
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


def _skipped_warning(name: str, unit: str, mistyped: list[tuple[int, str]]) -> str:
    """One warning for a file's skipped records: 'F:3: 3 record(s) ... (and lines 6, 7); first: ...'."""
    where = f"{name}:{mistyped[0][0]}" if unit == "line" else f"{name}: {unit} {mistyped[0][0]}"
    more = f" (and {unit}s {', '.join(str(n) for n, _ in mistyped[1:6])}{', ...' if len(mistyped) > 6 else ''})" \
        if len(mistyped) > 1 else ""
    return f"{where}: {len(mistyped)} record(s) with wrong-typed fields skipped{more}; first: {mistyped[0][1]}"


def _too_new_warning(name: str, too_new: list[tuple[int, int]]) -> str:
    """One warning for a file's records of a newer format: which, and what this gradbench reads."""
    newest = max(v for _, v in too_new)
    return (f"{name}:{too_new[0][0]}: {len(too_new)} record(s) of format_version up to {short_repr(newest)} "
            f"skipped: this gradbench reads formats up to {FORMAT_VERSION} (a newer gradbench wrote them; upgrade "
            "to read them)")


def _all_skipped(path, unit: str, mistyped: list[tuple[int, str]]) -> ResultsFileError:
    """A file none of whose records can be used: said as such, not as an empty file or inputs that agree."""
    return ResultsFileError(f"all {len(mistyped)} records in {str(path)!r} skipped: {unit} {mistyped[0][0]}: "
                            f"{mistyped[0][1]}")


def read_jsonl(path) -> tuple[list[dict], list[str]]:
    """Records of a gradbench JSONL file, and warnings for lines that could not be used.

    Records come out in the current format (migrate.py), whatever gradbench wrote them. A line cut short
    by a kill mid-write is skipped with a warning, never an error; so is a record whose fields have the
    wrong types (one warning per file, naming the lines), and one of a format newer than this gradbench
    reads (another). An empty file is a valid, empty result (a shard that received no cases); a file with
    lines but no gradbench record at all raises ResultsFileError, and so does one whose every record is
    skipped.
    """
    records: list[dict] = []
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
            obj = loads(line)
        except ValueError:  # not JSON, or an integer of more digits than Python converts
            obj = None
        if is_record(obj):
            try:
                obj = migrated(obj)
            except TooNew as exc:
                too_new.append((number, exc.version))
                continue
            except ValueError as exc:  # a format_version that names no format
                mistyped.append((number, str(exc)))
                continue
            wrong = problems(obj)
            if wrong:
                mistyped.append((number, wrong[0]))
            else:
                records.append(obj)
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


class ResultsLocked(Exception):
    """Another run is writing this results file."""


class ResultsLock:
    """An exclusive lock on a results file for one run, so that two runs never both measure into one
    file, by whatever name, symlink or hard link they reach it: the lock (flock) is on the file itself,
    which is created if absent. The kernel drops it when the process ends, however it ends."""

    def __init__(self, path):
        import fcntl

        self.path = str(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "ab")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _flock_holder(os.fstat(self._file.fileno()))
            self._file.close()
            raise ResultsLocked(f"{self.path!r} is being written by another gradbench run ({holder}); "
                                "wait for it, or choose another --out") from None

    def release(self) -> None:
        self._file.close()  # closing drops the lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _flock_holder(stat: os.stat_result) -> str:
    """'pid N' of the process holding a flock on the file (Linux /proc/locks), else 'another process'."""
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and device in parts:
                    return f"pid {parts[parts.index(device) - 1]}"
    except OSError:
        pass
    return "another process"


class JsonlWriter:
    """Appends records one line at a time, each written whole and fsynced, so a kill loses at most the
    line in flight. A line that cannot be written whole (disk full, quota, file size limit) is cut
    back off the file and WriteFailed raised: every record before it is intact, no partial line left."""

    def __init__(self, path):
        self.path = str(path)
        self.written = 0
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        # A previous run killed mid-write may have left a partial line: start on a fresh line.
        end = os.lseek(self._fd, 0, os.SEEK_END)
        if end > 0 and os.pread(self._fd, 1, end - 1) != b"\n":
            self._append(b"\n")

    def _append(self, data: bytes) -> None:
        before = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                n = os.write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
            os.fsync(self._fd)
        except BaseException as exc:  # a signal's exception mid-line too: the line goes, whole
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            if not isinstance(exc, OSError):
                raise
            raise WriteFailed(f"cannot write results to {self.path!r}: {exc.strerror or exc}; the {self.written} "
                              f"records this run wrote before it are intact; make room, then continue with "
                              f"--out {self.path} --resume") from None

    def write(self, record: dict) -> None:
        self._append((to_json_line(record) + "\n").encode())
        self.written += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def to_frame(records: list[dict]):
    """Records -> a pandas DataFrame with every schema column (unknown fields kept)."""
    import pandas as pd

    df = pd.DataFrame.from_records(records)
    for column in RECORD_FIELDS:
        if column not in df.columns:
            df[column] = None
    return with_identity_defaults(df)


def with_identity_defaults(df):
    """compile and autocast with a null (or no column) read as files from before them meant: eager."""
    return df.assign(**{k: df[k].astype(object).where(df[k].notna(), v) if k in df else v
                        for k, v in IDENTITY_DEFAULTS.items()})


# ---------------------------------------------------------------- readers: every source -> records

# asv benchmark (class.method suffix) -> (step, record field)
ASV_METRICS = {
    "Forward.time_forward": ("forward", "time_median_s"),
    "TrainStep.time_train_step": ("train_step", "time_median_s"),
    "ForwardMemory.track_peak_bytes": ("forward", "peak_bytes"),
    "ForwardMemory.track_saved_bytes": ("forward", "saved_bytes"),
    "CudaMemory.track_cuda_max_memory_allocated": ("forward", "cuda_max_allocated_bytes"),
    "Forward.peakmem_forward": ("forward", "rss_peak_bytes"),  # gradbench 0.1's suite
}
ASV_PARAM_NAMES = ["model", "size", "batch_size", "device", "mode"]


SINGLE_SAMPLE = ("one sample (asv --quick, or a single round): one call, with no spread to judge it by (before "
                 "gradbench 0.3.1, a cold first call with its lazy set-up), not a timing (judged on reading)")


def judged_on_reading(record: dict) -> None:
    """A record without a trust verdict (asv, pytest-benchmark, files from before gradbench 0.3) is
    judged on what it still allows: the precision of its median, from its stored interval or raw
    samples. Contention was not measured, so a precise one stays unjudged (null), never trusted."""
    if record.get("status") != "ok" or record.get("time_trusted") is not None or record.get("time_converged"):
        return
    if record.get("n_samples") == 1:  # asv --quick (or one pytest-benchmark round): one call, no spread
        record.update(time_trusted=False, time_distrust=SINGLE_SAMPLE)
        return
    med, low, high = (record.get(k) for k in ("time_median_s", "time_ci_low_s", "time_ci_high_s"))
    if all(isinstance(v, (int, float)) for v in (med, low, high)):
        width = rel_halfwidth(med, low, high)
    elif isinstance(record.get("samples_s"), list) and len(record["samples_s"]) >= 3:
        width = samples_rel_halfwidth(record["samples_s"])
    else:
        return
    reasons = distrust_reasons(width, False, None) if width is not None else []
    if reasons:
        record.update(time_trusted=False, time_distrust=reasons[0] + " (judged on reading)")


def read_gradbench_jsonl(path) -> tuple[list[dict], list[str]]:
    records, warnings = read_jsonl(path)
    records = [completed(r) for r in records]  # older files lack newer fields
    for r in records:
        r["source"] = r["source"] or "gradbench"
    return standing(records), warnings  # a file holds every attempt; dataset.py says which stand


def _none_if(value, *empty):
    return None if value in empty else value


ASV_VALUE_MAX = 1000  # characters: asv stores a parameter's repr; gradbench's are short names and numbers


def asv_value(text):
    """One asv parameter value from its stored repr: a string, number, bool or None; ValueError otherwise.
    A long one is refused unparsed: literal_eval of '-' * 200000 + '1' exhausts memory."""
    if not isinstance(text, str) or len(text) > ASV_VALUE_MAX:
        raise ValueError(f"parameter value {short_repr(text)} is not a literal of at most {ASV_VALUE_MAX} characters")
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = ...
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"parameter value {short_repr(text)} is not the literal of a string, number or None")
    return value


def read_asv_results(path, warnings: list[str] | None = None) -> list[dict]:
    """An asv results folder (results/asv/results, or one machine's folder in it) -> records. A benchmark
    whose param_names repeat a name is refused (which value is the model?), with one line in ``warnings``.
    Folder names are glob.escape'd where they are globbed: 'res[1]' is a name, not a pattern."""

    machine_dirs = [path] if os.path.exists(os.path.join(path, "machine.json")) else sorted(
        os.path.dirname(p) for p in glob.glob(os.path.join(glob.escape(path), "*", "machine.json"))
    )
    if not machine_dirs:
        raise ResultsFileError(f"{str(path)!r} is not an asv results folder (no machine.json in it or below it)")
    param_names: dict[str, list[str]] = {}
    for candidate in (os.path.join(path, "benchmarks.json"), os.path.join(os.path.dirname(path), "benchmarks.json")):
        if os.path.exists(candidate):
            param_names = {k: v.get("param_names", []) for k, v in loads(read_text(candidate), ours=False).items()
                           if isinstance(v, dict)}
            break
    records: list[dict] = []
    refused: dict[str, str] = {}
    for machine_dir in machine_dirs:
        for result_file in sorted(glob.glob(os.path.join(glob.escape(machine_dir), "*.json"))):
            if os.path.basename(result_file) == "machine.json":
                continue
            try:
                data = loads(read_text(result_file), ours=False)
                columns = data["result_columns"]
            except ResultsFileError:
                raise
            except (OSError, ValueError, KeyError) as exc:
                raise ResultsFileError(f"{result_file!r} is not an asv result file: {exc}") from None
            params = data.get("params", {})
            merged: dict[tuple, dict] = {}
            for name, row in data.get("results", {}).items():
                suffix = ".".join(name.split(".")[-2:])
                if suffix not in ASV_METRICS:
                    continue
                step, field = ASV_METRICS[suffix]
                names = param_names.get(name) or ASV_PARAM_NAMES
                repeated = [n for n in dict.fromkeys(names) if names.count(n) > 1]
                if repeated:
                    refused.setdefault(name, repeated[0])
                    continue
                row = dict(zip(columns, row))
                values = row.get("result") or []
                combos = itertools.product(*row.get("params", []))  # lazily: as many as there are results
                q25, q75 = row.get("stats_q_25") or [], row.get("stats_q_75") or []
                samples = row.get("samples") or []
                repeats = row.get("stats_repeat") or []  # samples asv took, kept or not (--quick: 1)
                for i, (combo, value) in enumerate(zip(combos, values)):
                    if value is None or (isinstance(value, float) and math.isnan(value)):
                        continue
                    try:
                        identity = dict(zip(names, (asv_value(v) for v in combo)))
                    except ValueError as exc:
                        raise ResultsFileError(f"{result_file!r} is not an asv result file: {exc}") from None
                    key = (step, *sorted(identity.items()))
                    record = merged.setdefault(key, new_record(**identity, step=step))
                    record[field] = value
                    if field == "time_median_s":
                        if i < len(q25) and q25[i] is not None and q75[i] is not None:
                            record["time_iqr_s"] = q75[i] - q25[i]
                        if i < len(repeats) and isinstance(repeats[i], int):
                            record["n_samples"] = repeats[i]
                        if i < len(samples) and samples[i]:
                            record["samples_s"] = samples[i]
                            record["n_samples"] = len(samples[i])
            commit = data.get("commit_hash")
            try:
                timestamp = _dt.datetime.fromtimestamp(data.get("date", 0) / 1000, _dt.timezone.utc).isoformat(
                    timespec="seconds")
            except (OverflowError, OSError, ValueError) as exc:  # a date past what a datetime holds
                raise ResultsFileError(f"{result_file!r} is not an asv result file: bad date "
                                       f"{short_repr(data.get('date'))} ({exc})") from None
            for record in merged.values():
                record.update(
                    format_version=FORMAT_VERSION, kind="case",  # made here, in the current format
                    dtype="float32", status="ok", error=None, source="asv", git_commit=commit,
                    run_id=f"asv:{params.get('machine')}:{(commit or '')[:8]}", timestamp=timestamp,
                    machine=params.get("machine"), cpu=params.get("cpu"),
                    gpu=_none_if(params.get("gpu"), "none", ""), driver=_none_if(params.get("driver"), "none", ""),
                    cuda=_none_if(params.get("cuda"), "none", ""), torch=params.get("torch"),
                    python=params.get("python"),
                )
                records.append(record)
    if refused and warnings is not None:
        (name, repeated), *more = refused.items()
        warnings.append(f"{os.path.basename(os.path.normpath(str(path)))}: {len(refused)} benchmark(s) refused, "
                        f"their param_names repeat a name; first: {short_repr(name)} repeats {short_repr(repeated)}")
    if not records:
        raise ResultsFileError(f"{str(path)!r} holds no gradbench asv results")
    return records


BOOL_FIELDS = tuple(name for name, meta in SCHEMA.items() if meta["kind"] == "bool")


def read_pytest_benchmark(path, data: dict) -> list[dict]:
    """pytest-benchmark's --benchmark-json output of gradbench's suite -> records."""
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {})
    records = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "mode" not in info or "model" not in info:
            continue
        stats = bench.get("stats", {})
        record = completed(info)  # the pipeline's record, less its timing
        for flag in BOOL_FIELDS:  # the record's booleans are stored as 0/1 for pytest-benchmark's own tables
            if record.get(flag) in (0, 1):
                record[flag] = bool(record[flag])
        provenance = dict(
            machine=machine.get("node"), cpu=(machine.get("cpu") or {}).get("brand_raw"), gpu=machine.get("gpu"),
            gpu_count=machine.get("gpu_count"), driver=machine.get("driver"), cuda=machine.get("cuda"),
            torch=machine.get("torch"), python=machine.get("python_version"), git_commit=commit.get("id"),
        )
        record.update({k: v for k, v in provenance.items() if v is not None})
        record.update(
            format_version=FORMAT_VERSION, kind="case",  # made here, in the current format
            status="ok", error=None, source="pytest-benchmark", timestamp=data.get("datetime"),
            time_median_s=stats.get("median"), time_iqr_s=stats.get("iqr"), n_samples=stats.get("rounds"),
            samples_s=stats.get("data"), run_id=f"pytest-benchmark:{machine.get('node')}:{data.get('datetime')}",
        )
        records.append(record)
    if not records:
        raise ResultsFileError(f"{str(path)!r} holds no gradbench pytest-benchmark results")
    return records


def read_any(path) -> tuple[list[dict], list[str]]:
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
    if not path.endswith(".jsonl"):  # JSONL lines were checked as read, with their line numbers
        found = [(i, problems(r)) for i, r in enumerate(records, 1)]
        mistyped = [(i, wrong[0]) for i, wrong in found if wrong]
        if mistyped and len(mistyped) == len(records):
            raise _all_skipped(path, "record", mistyped)
        if mistyped:
            warnings = [*warnings, _skipped_warning(os.path.basename(path), "record", mistyped)]
            records = [r for r, (_, wrong) in zip(records, found) if not wrong]
    for r in records:
        r["source_file"] = path
        judged_on_reading(r)
    return records, warnings


def _read_by_kind(path: str) -> tuple[list[dict], list[str]]:
    if os.path.isdir(path):
        warnings: list[str] = []
        return read_asv_results(path, warnings), warnings
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
            records, warnings = read_pytest_benchmark(path, data), []
        elif isinstance(data, dict) and "result_columns" in data:
            warnings = []
            records = read_asv_results(os.path.dirname(os.path.abspath(path)), warnings)
        else:  # perhaps JSONL under another name
            records, warnings = read_gradbench_jsonl(path)
    return records, warnings


def load(paths, warn=None):
    """One tidy DataFrame (the record schema's columns) from gradbench JSONL files, asv result
    folders and pytest-benchmark JSON files; several files together are one data set."""

    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    records: list[dict] = []
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
