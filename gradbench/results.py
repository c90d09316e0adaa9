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
