"""asv result folders (results/asv/results, or one machine's folder in it) -> records of the one
schema (record.py), as the values of each record (results.py checks and freezes them). asv stores
parameter values as reprs: they are read as literals, never evaluated."""
from __future__ import annotations

import ast
import datetime as _dt
import glob
import itertools
import math
import os
import re

from ..reading import ResultsFileError, loads, read_text
from ..record import new_record, short_repr
from ..schema import FORMAT_VERSION

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
    """An asv results folder (results/asv/results, or one machine's folder in it) -> the values of its
    records (drafts: one per case, its metrics merged). A benchmark
    whose param_names repeat a name is refused (which value is the model?), with one line in ``warnings``.
    Folder names are glob.escape'd where they are globbed: 'res[1]' is a name, not a pattern."""
    machine_dirs = _machine_dirs(path)
    param_names = _param_names(path)
    records: list[dict] = []
    refused: dict[str, str] = {}  # benchmark -> the first name its param_names repeat
    for machine_dir in machine_dirs:
        for result_file in sorted(glob.glob(os.path.join(glob.escape(machine_dir), "*.json"))):
            if os.path.basename(result_file) != "machine.json":
                records.extend(_read_result_file(result_file, param_names, refused))
    if refused and warnings is not None:
        (name, repeated), *more = refused.items()
        warnings.append(f"{os.path.basename(os.path.normpath(str(path)))}: {len(refused)} benchmark(s) refused, "
                        f"their param_names repeat a name; first: {short_repr(name)} repeats {short_repr(repeated)}")
    if not records:
        raise ResultsFileError(f"{str(path)!r} holds no gradbench asv results")
    return records


def _machine_dirs(path) -> list[str]:
    """``path`` where it is one machine's folder (it holds machine.json), else the machine folders in it."""
    machine_dirs = [path] if os.path.exists(os.path.join(path, "machine.json")) else sorted(
        os.path.dirname(p) for p in glob.glob(os.path.join(glob.escape(path), "*", "machine.json"))
    )
    if not machine_dirs:
        raise ResultsFileError(f"{str(path)!r} is not an asv results folder (no machine.json in it or below it)")
    return machine_dirs


def _param_names(path) -> dict[str, list[str]]:
    """Each benchmark's param_names, from the benchmarks.json in ``path`` or beside it ({} where there is none:
    the names gradbench's suite uses are assumed)."""
    for candidate in (os.path.join(path, "benchmarks.json"), os.path.join(os.path.dirname(path), "benchmarks.json")):
        if os.path.exists(candidate):
            return {k: v.get("param_names", []) for k, v in loads(read_text(candidate), ours=False).items()
                    if isinstance(v, dict)}
    return {}


def _read_result_file(result_file: str, param_names: dict, refused: dict) -> list[dict]:
    """One asv result file (one machine, one commit) -> a record per case and step, holding every metric
    measured of it. A benchmark whose param_names repeat a name is skipped and named in ``refused``."""
    data, columns = _load_result_file(result_file)
    merged: dict[tuple, dict] = {}  # (step, identity items) -> record
    for name, row in data.get("results", {}).items():
        suffix = ".".join(name.split(".")[-2:])
        if suffix not in ASV_METRICS:
            continue
        names = param_names.get(name) or ASV_PARAM_NAMES
        repeated = [n for n in dict.fromkeys(names) if names.count(n) > 1]
        if repeated:
            refused.setdefault(name, repeated[0])
            continue
        _merge_benchmark(merged, *ASV_METRICS[suffix], names, dict(zip(columns, row)), result_file)
    provenance = _provenance(data, result_file)  # after the rows: a bad row is named before a bad date
    for record in merged.values():
        record.update(provenance)
    return list(merged.values())


def _load_result_file(result_file: str) -> tuple[dict, list]:
    """The file's JSON and its result_columns; a file that is not asv's is refused in one line."""
    try:
        data = loads(read_text(result_file), ours=False)
        return data, data["result_columns"]
    except ResultsFileError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ResultsFileError(f"{result_file!r} is not an asv result file: {exc}") from None


def _merge_benchmark(merged: dict, step: str, field: str, names: list[str], row: dict, result_file: str) -> None:
    """One benchmark's values, one per parameter combination, into ``merged``'s record of each case and step."""
    values = row.get("result") or []
    combos = itertools.product(*row.get("params", []))  # lazily: as many as there are results
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
            _add_time_spread(record, row, i)


def _add_time_spread(record: dict, row: dict, i: int) -> None:
    """The IQR, sample count and samples of a row's ``i``-th time, where asv kept them."""
    q25, q75 = row.get("stats_q_25") or [], row.get("stats_q_75") or []
    samples = row.get("samples") or []
    repeats = row.get("stats_repeat") or []  # samples asv took, kept or not (--quick: 1)
    if i < len(q25) and q25[i] is not None and q75[i] is not None:
        record["time_iqr_s"] = q75[i] - q25[i]
    if i < len(repeats) and isinstance(repeats[i], int):
        record["n_samples"] = repeats[i]
    if i < len(samples) and samples[i]:
        record["samples_s"] = samples[i]
        record["n_samples"] = len(samples[i])


def _provenance(data: dict, result_file: str) -> dict:
    """What every record of one result file shares: the commit, its date and the machine asv ran on."""
    params = data.get("params", {})
    commit = data.get("commit_hash")
    try:
        timestamp = _dt.datetime.fromtimestamp(data.get("date", 0) / 1000, _dt.timezone.utc).isoformat(
            timespec="seconds")
    except (OverflowError, OSError, ValueError) as exc:  # a date past what a datetime holds
        raise ResultsFileError(f"{result_file!r} is not an asv result file: bad date "
                               f"{short_repr(data.get('date'))} ({exc})") from None
    return dict(
        format_version=FORMAT_VERSION, kind="case",  # made here, in the current format
        dtype="float32", status="ok", error=None, source="asv", git_commit=commit,
        run_id=f"asv:{params.get('machine')}:{(commit or '')[:8]}", timestamp=timestamp,
        machine=params.get("machine"), cpu=params.get("cpu"),
        gpu=_none_if(params.get("gpu"), "none", ""), driver=_none_if(params.get("driver"), "none", ""),
        cuda=_none_if(params.get("cuda"), "none", ""), torch=params.get("torch"),
        python=python_version(params),
    )


VERSION = re.compile(r"\d+(\.\d+)+")


def python_version(params: dict) -> str | None:
    """The Python version a result file's benchmarks ran under: asv's 'python' where it is one (an environment
    asv built: '3.11'); with --python=same or an existing environment asv keeps the interpreter's path there,
    so the version gradbench asv-machine wrote beside it, else one the path names ('.../python3.11'), else
    None: a path is not a version."""
    python = params.get("python")
    if isinstance(python, str) and VERSION.fullmatch(python):
        return python
    written = params.get("python_version")
    if isinstance(written, str) and VERSION.fullmatch(written):
        return written
    named = re.search(r"python(\d+(?:\.\d+)+)$", os.path.basename(python)) if isinstance(python, str) else None
    return named.group(1) if named else None
