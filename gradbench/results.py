"""The record schema (field names are a contract) and the JSONL store."""
from __future__ import annotations

import datetime as _dt
import uuid

STATUSES = ("ok", "error", "oom", "timeout", "crashed", "not_applicable")

IDENTITY_FIELDS = ("model", "size", "params", "batch_size", "device", "dtype", "mode", "step", "threads")
OUTCOME_FIELDS = ("status", "error")
TIME_FIELDS = ("time_median_s", "time_iqr_s", "time_ci_low_s", "time_ci_high_s", "n_samples", "samples_s")
MEMORY_FIELDS = (
    "peak_bytes", "saved_bytes", "param_bytes", "grad_bytes",
    "cuda_max_allocated_bytes", "cuda_max_reserved_bytes", "rss_peak_bytes",
)
BEHAVIOUR_FIELDS = (
    "dropout_active", "bn_batch_stats", "bn_stats_updated", "graph_recorded",
    "grads_computed", "fastpath", "max_abs_diff_vs_eval_no_grad",
)
WORK_FIELDS = ("flops", "flops_per_s")
PROVENANCE_FIELDS = (
    "run_id", "timestamp", "gradbench_version", "git_commit", "machine", "cpu",
    "gpu", "gpu_count", "driver", "cuda", "torch", "python",
)
RECORD_FIELDS = (
    IDENTITY_FIELDS + OUTCOME_FIELDS + TIME_FIELDS + MEMORY_FIELDS
    + BEHAVIOUR_FIELDS + WORK_FIELDS + PROVENANCE_FIELDS
)


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def empty_record(**identity) -> dict:
    """A record with every schema field present (None where not measured), identity filled in."""
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(identity)
    record["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return record


CASE_KEY_FIELDS = ("model", "size", "batch_size", "device", "dtype", "mode", "step")
# A case recorded with one of these is done; resume re-runs the others (failures may be transient).
DONE_STATUSES = ("ok", "not_applicable")


class ResultsFileError(ValueError):
    """A results file that is not gradbench JSONL (or cannot be read)."""


def case_key(record: dict) -> tuple:
    return tuple(record.get(k) for k in CASE_KEY_FIELDS)


def is_record(obj) -> bool:
    return isinstance(obj, dict) and all(k in obj for k in ("model", "mode", "step", "status"))


def read_jsonl(path) -> tuple[list[dict], list[str]]:
    """Records of a gradbench JSONL file, and warnings for lines that could not be read.

    A line cut short by a kill mid-write is skipped with a warning, never an error; a file
    with lines but no gradbench record at all raises ResultsFileError.
    """
    import json
    import os

    records: list[dict] = []
    warnings: list[str] = []
    bad = 0
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"cannot read results file {str(path)!r}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if is_record(obj):
            records.append(obj)
        else:
            bad += 1
            last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == "")
            warnings.append(
                f"{os.path.basename(str(path))}:{number}: "
                + ("truncated last line ignored (killed mid-write?)" if last else "not a gradbench record, ignored")
            )
    if bad and not records:
        raise ResultsFileError(f"{str(path)!r} is not a gradbench JSONL results file (no line is a gradbench record)")
    return records, warnings


class JsonlWriter:
    """Appends records one line at a time, flushed and fsynced, so a kill loses at most the line in flight."""

    def __init__(self, path):
        import os

        self.path = str(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._file = open(self.path, "a+b")
        # A previous run killed mid-write may have left a partial line: start on a fresh line.
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")

    def write(self, record: dict) -> None:
        import json
        import os

        self._file.write((json.dumps(record, allow_nan=True) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

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
    return df
