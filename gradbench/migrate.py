"""Records read from files, brought to the current format one version step at a time.

Every reader (report, compare, resume, capacity, Slurm's merge) takes records through ``migrated``, so
none of them needs to know what an older file meant by a field it lacked. ``_from_N`` takes a record of
format N and returns one of format N + 1; ``STEPS`` applies them in order, so a format-1 record passes
through every step. Versions (record.FORMAT_VERSION says which is current):

  1  gradbench 0.1: results.py's field lists; no ``source``
  2  gradbench 0.2: the typed record (record.py, issue 9): ``source``, ``held_bytes``, ``stochastic_ops``
  3  gradbench 0.3: the trust verdict (issue 10): ``time_trusted``, ``repeat``, ``attempt``; within 0.3.x
     ``max_time_s``, the Slurm and capacity fields
  4  gradbench 0.4: ``compile`` and ``autocast`` (issue 16); within 0.4.x energy, ``head``, ...
  5  ``format_version`` and ``kind`` written on every record
  6  ``seq_len`` and ``image_size``, the input axes (issue 27: the reference families)

A record without ``format_version`` (every file before format 5) has its format inferred from its
fields: from 0.2 on, gradbench wrote every declared field on every record, null or not, so the newest
format one of whose INTRODUCED fields the record has is the one that wrote it; with none of them it is
format 1. (0.1 wrote steps_per_sample and the like on ok records only; they mark nothing.) A
``format_version`` newer than this gradbench reads is TooNew: its reader skips the record, with one
warning naming the file, the version and the newest it reads.
"""
from __future__ import annotations

from .record import short_repr
from .schema import FORMAT_VERSION

# The fields a format introduced, from `git log -p -- gradbench/record.py` (0.1: its results.py).
INTRODUCED = {
    2: ("source", "held_bytes", "stochastic_ops", "peak_bytes_source", "traceback", "global_state_warning",
        "cudnn_benchmark"),
    3: ("time_trusted", "time_distrust", "repeat", "attempt", "cpu_other_share", "cpu_steal_share",
        "cpu_wait_share", "gpu_other_processes", "gpu_sm_clock_mhz", "gpu_temperature_c", "gpu_throttle_reasons",
        "max_time_s", "memory_budget_bytes", "capacity_batch_size", "launcher", "slurm_job_id",
        "slurm_array_task_id", "slurm_state", "host", "gpu_index"),
    4: ("compile", "autocast", "compile_cold", "compile_time_s", "compiles", "recompiles", "recompile_reasons",
        "graph_breaks", "compiled_graphs", "output_dtype", "requested_peak_bytes", "energy_sampling", "energy_j",
        "samples_per_joule", "energy_note", "dropout_evidence", "head", "head_module", "mode_overrides"),
}


class TooNew(ValueError):
    """A record of a format newer than this gradbench reads (a newer gradbench wrote it)."""

    def __init__(self, version: int):
        super().__init__(f"format_version {short_repr(version)} is newer than this gradbench reads ({FORMAT_VERSION})")
        self.version = version


def inferred_version(record: dict) -> int:
    """The format of a record that does not name one: the newest whose introduced fields it has."""
    return max((v for v, names in INTRODUCED.items() if any(n in record for n in names)), default=1)


def _from_1(record: dict) -> dict:
    """0.1 -> 0.2: only `gradbench run` wrote JSONL then, so a record without a source is gradbench's."""
    return {**record, "source": record.get("source") or "gradbench", "format_version": 2}


def _from_2(record: dict) -> dict:
    """0.2 -> 0.3: nothing to fill. A null time_trusted means what 0.3 means by it, not judged (results
    judges the precision on reading), and a null repeat or attempt one process's first attempt."""
    return {**record, "format_version": 3}


def _from_3(record: dict) -> dict:
    """0.3 -> 0.4: every case before 0.4 ran eager, without autocast."""
    return {**record, "compile": record.get("compile") or "none", "autocast": record.get("autocast") or "none",
            "format_version": 4}


def kind_from_source(record) -> str:
    """What a record from before ``kind`` stands for, by the source that wrote it: a capacity search's
    batches said source capacity; every other record is a case."""
    return "capacity_probe" if record.get("source") == "capacity" else "case"


def _from_4(record: dict) -> dict:
    """0.4 -> 5: the kind, from the source that wrote it."""
    kind = record.get("kind")  # a kind a 0.4 record somehow had stands, to be judged like any value
    return {**record, "kind": kind_from_source(record) if kind is None else kind, "format_version": 5}


LEGACY_SEQ_LEN = {"transformer": 32}  # the toy transformer's fixed sequence length before format 6


def _from_5(record: dict) -> dict:
    """5 -> 6: the input axes. The toy transformer took 32 tokens; every other model took neither axis."""
    seq_len = record.get("seq_len")
    if seq_len is None:
        seq_len = LEGACY_SEQ_LEN.get(record.get("model"))
    return {**record, "seq_len": seq_len, "image_size": record.get("image_size"), "format_version": 6}


# STEPS[N - 1] takes format N to N + 1; the last one reaches FORMAT_VERSION.
STEPS = (_from_1, _from_2, _from_3, _from_4, _from_5)


def declared_version(record: dict) -> int:
    """The record's format: its format_version, else inferred. TooNew if newer than FORMAT_VERSION;
    ValueError if format_version names no format (not a whole number from 1)."""
    version = record.get("format_version")
    if version is None:
        return inferred_version(record)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"format_version={short_repr(version)} is not a format (1 to {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise TooNew(version)
    return version


def migrated(record: dict) -> dict:
    """``record`` in format FORMAT_VERSION (a new dict; unknown fields kept). Raises as declared_version."""
    for step in STEPS[declared_version(record) - 1:]:
        record = step(record)
    return record
