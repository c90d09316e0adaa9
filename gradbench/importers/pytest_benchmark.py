"""pytest-benchmark's --benchmark-json output of gradbench's suite (benchmarks/pytest_suite) -> records
of the one schema: the pipeline's record rides in extra_info, the timing in stats. Each comes out as
the values of one record (results.py checks and freezes them)."""
from __future__ import annotations

from ..reading import ResultsFileError
from ..schema import FORMAT_VERSION, RECORD_FIELDS, SCHEMA


BOOL_FIELDS = tuple(name for name, meta in SCHEMA.items() if meta["kind"] == "bool")


def read_pytest_benchmark(path, data: dict) -> list[dict]:
    """pytest-benchmark's --benchmark-json output of gradbench's suite -> the values of its records, every
    declared field present (null where it had none)."""
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {})
    records = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "mode" not in info or "model" not in info:
            continue
        stats = bench.get("stats", {})
        # the record's booleans are stored as 0/1 for pytest-benchmark's own tables
        flags = {flag: bool(info[flag]) for flag in BOOL_FIELDS if info.get(flag) in (0, 1)}
        provenance = dict(
            machine=machine.get("node"), cpu=(machine.get("cpu") or {}).get("brand_raw"), gpu=machine.get("gpu"),
            gpu_count=machine.get("gpu_count"), driver=machine.get("driver"), cuda=machine.get("cuda"),
            torch=machine.get("torch"), python=machine.get("python_version"), git_commit=commit.get("id"),
        )
        records.append({
            **dict.fromkeys(RECORD_FIELDS), **info, **flags,  # the pipeline's record, less its timing
            **{k: v for k, v in provenance.items() if v is not None},
            "format_version": FORMAT_VERSION, "kind": "case",  # made here, in the current format
            "status": "ok", "error": None, "source": "pytest-benchmark", "timestamp": data.get("datetime"),
            "time_median_s": stats.get("median"), "time_iqr_s": stats.get("iqr"), "n_samples": stats.get("rounds"),
            "samples_s": stats.get("data"),
            "run_id": f"pytest-benchmark:{machine.get('node')}:{data.get('datetime')}",
        })
    if not records:
        raise ResultsFileError(f"{str(path)!r} holds no gradbench pytest-benchmark results")
    return records
