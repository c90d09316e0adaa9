"""The record: what one case measured, one JSON object per line. ``Fields`` declares the schema; a
``Record`` is one record, frozen and checked.

Field names are a contract others depend on: add fields, never rename them. Every field has a
kind, a unit and a sentence; nothing may write a field that is not declared here, JSON never holds
NaN or infinity (null instead), and the README's field table is generated from this list (a test
keeps the two equal).

A record is in three parts (PARTS): the case (what was run: its identity and the settings it was
measured under), what was measured, and the environment (where, with what, by which front end); and
every record carries its format_version and kind. Measuring code fills a draft (``new_record``, a
dict) while a case runs; the writer freezes it into a ``Record``, which refuses what the schema does
not declare. Readers get Records (results.py), and change one only by making another
(``Record.replace``), checked again.
"""
from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

# The record format; migrate.py brings older records to it on reading, one step per version:
# 1 = gradbench 0.1, 2 = 0.2, 3 = 0.3, 4 = 0.4 (before format_version was written), 5 = format_version and kind.
FORMAT_VERSION = 5
# What a record stands for. Readers take every record as a case unless told apart, by source today.
# "prediction" and "ab_trial" are reserved for issue 25's predicted cases and A/B trials; nothing writes them yet.
KINDS = ("case", "capacity_probe", "prediction", "ab_trial")
STATUSES = ("ok", "error", "oom", "timeout", "crashed", "not_applicable")
# A case recorded with one of these is done; resume re-runs the others (failures may be transient).
DONE_STATUSES = ("ok", "not_applicable")
# One case identity, used everywhere a case is keyed or named. A workload is what its modes share.
# compile and autocast belong to the workload: under torch.compile a workload's modes share one compiled model.
WORKLOAD_FIELDS = ("model", "size", "batch_size", "device", "dtype", "compile", "autocast")
CASE_KEY_FIELDS = (*WORKLOAD_FIELDS, "mode", "step")
# What a record from before a field existed means by its null: files from before gradbench 0.4 ran eager.
# Reading JSONL fills these in already (migrate.py); asv and pytest-benchmark records, and records made
# in memory, still leave them null, so every reader keeps reading a null through this.
IDENTITY_DEFAULTS = {"compile": "none", "autocast": "none"}
# Settings that change what a case measures without changing which case it is: a results file holds
# one value of each, so that --resume never mixes two experiments under one case key.
MEASUREMENT_SETTINGS = ("seed", "threads", "max_time_s", "cudnn_benchmark", "compile_cold", "energy_sampling",
                        "head")

_KINDS = {"str": str, "int": int, "float": (float, int)}


def _f(group: str, kind: str, unit: str, doc: str):
    return field(default=None, metadata={"group": group, "kind": kind, "unit": unit, "doc": doc})


@dataclass
class Fields:
    """The declaration of every field a Record holds. Every field may be null (not measured, not applicable,
    or not recorded by that source) but format_version and kind, which every Record carries."""

    # record: which format it is written in, and what it stands for
    format_version: int = _f("record", "int", "", "the record format (1 = gradbench 0.1 ... 4 = 0.4, 5 = this "
                             "field's own); older records are migrated on reading, so readers see the newest")
    kind: str = _f("record", "str", "", "case (one measured case), or capacity_probe (one batch a `gradbench "
                   "capacity` search measured); prediction and ab_trial are reserved")

    # identity: what was run
    model: str = _f("identity", "str", "",
                    "built-in family (mlp, cnn, transformer) or MODULE:FUNCTION / file.py:FUNCTION")
    size: str = _f("identity", "str", "", "model size name")
    params: int = _f("identity", "int", "count", "number of parameter elements")
    batch_size: int = _f("identity", "int", "count", "inputs per step")
    device: str = _f("identity", "str", "", "cpu, cuda or cuda:N")
    dtype: str = _f("identity", "str", "", "float32, bfloat16 or float16: parameters and floating-point inputs")
    mode: str = _f("identity", "str", "", "one of the ten modes (README: Modes)")
    step: str = _f("identity", "str", "", "forward or train_step")
    compile: str = _f("identity", "str", "", "torch.compile mode the model ran under: none (eager), default, "
                      "max-autotune or reduce-overhead (null in files from before gradbench 0.4: none)")
    autocast: str = _f("identity", "str", "", "torch.autocast dtype around the forward: none, bfloat16 or float16 "
                       "(null in files from before gradbench 0.4: none)")
    threads: int = _f("identity", "int", "count", "torch intra-op threads of the measuring process")
    seed: int = _f("identity", "int", "", "seed of weights, input batch, behaviour probes and mode order")
    cudnn_benchmark: bool = _f("identity", "bool", "", "torch.backends.cudnn.benchmark during the case (null on cpu)")
    max_time_s: float = _f("identity", "float", "s", "the time cap per case the run asked for (--max-time)")
    compile_cold: bool = _f("identity", "bool", "", "the compiler's caches were reset before this case "
                            "(--compile-cold; null when eager)")
    head: str = _f("identity", "str", "", "--head: the module finetune_head was told to train (null: the last "
                   "nn.Linear the output depends on, found by observation)")
    head_module: str = _f("identity", "str", "", "the module finetune_head trained (named by --head, or observed); "
                          "null in other modes")
    # outcome
    status: str = _f("outcome", "str", "", "ok, error, oom, timeout, crashed or not_applicable")
    error: str = _f("outcome", "str", "", "why the case did not complete (null when ok)")
    traceback: str = _f("outcome", "str", "", "where a workload failed to build (null otherwise)")
    mode_overrides: str = _f("outcome", "str", "", "what the mode switched back that the model was built with "
                             "(modules built in eval put in train, parameters built frozen made trainable): the "
                             "user's own configuration, which mode as_built measures; null when none")
    global_state_warning: str = _f("outcome", "str", "", "global torch state the model's code changed (named, then "
                                   "restored before the next case), and the mode's own training flags or "
                                   "requires_grad it switched back (named, then set again after each pass); null "
                                   "when it changed none")
    # time
    time_median_s: float = _f("time", "float", "s", "median time of one step")
    time_iqr_s: float = _f("time", "float", "s", "interquartile range of the samples")
    time_ci_low_s: float = _f("time", "float", "s", "95% confidence interval of the median, low end")
    time_ci_high_s: float = _f("time", "float", "s", "95% confidence interval of the median, high end")
    n_samples: int = _f("time", "int", "count", "timing samples taken")
    samples_s: list = _f("time", "list[float]", "s", "every raw sample: a block's time divided by its steps")
    steps_per_sample: int = _f("time", "int", "count", "steps in each timed block")
    time_converged: bool = _f("time", "bool", "", "the median's interval reached +-2% before the time cap")
    time_measured_s: float = _f("time", "float", "s", "wall time of the sampling loop (warm-up excluded)")
    measure_wall_s: float = _f("time", "float", "s", "wall time of the whole case, every pass included")
    # compile: what torch.compile did for this case (null when eager)
    compile_time_s: float = _f("compile", "float", "s", "the case's first call minus the median step: the "
                               "compilation it triggered, kept out of the samples (about 0, noise either way, "
                               "when it compiled nothing)")
    compiles: int = _f("compile", "int", "count", "compilations during the case, from the compiler's callbacks: "
                       "dynamo's of frames, recompilations included, and AOTAutograd's of a backward graph at "
                       "its first backward")
    recompiles: int = _f("compile", "int", "count", "of those, recompilations: a frame compiled before was "
                         "compiled again because a guard failed (this mode's switch of training flag, grad "
                         "mode or requires_grad)")
    recompile_reasons: list = _f("compile", "list[str]", "", "the guards that failed, as dynamo words them (first "
                                 "line): the first failing guard of each compiled entry it checked")
    graph_breaks: int = _f("compile", "int", "count", "graph breaks in one step: the compiled frames it entered "
                           "beyond the first, as torch.profiler saw dynamo enter them (a break resumes in a "
                           "frame of its own)")
    compiled_graphs: int = _f("compile", "int", "count", "compiled graphs one step ran, forward and backward, as "
                              "torch.profiler saw inductor call them (0: the step ran eager, and the case is "
                              "not_applicable)")
    # trust: was the machine quiet and the median precise while the case ran (measure/trust.py)
    time_trusted: bool = _f("trust", "bool", "", "the time can be trusted: precise, and no contention seen "
                            "(null where not judged: asv results, files from before gradbench 0.3)")
    time_distrust: str = _f("trust", "str", "", "why the time is not trusted (null when trusted)")
    cpu_other_share: float = _f("trust", "float", "fraction", "share of the allowed CPUs' capacity that other "
                                "processes used while the case ran (/proc/stat busy time minus this process's "
                                "CPU time)")
    cpu_steal_share: float = _f("trust", "float", "fraction", "share of the allowed CPUs' capacity the hypervisor "
                                "stole while the case ran (/proc/stat steal)")
    cpu_wait_share: float = _f("trust", "float", "fraction", "time this process's threads were runnable but waited "
                               "for a CPU, per unit of time they ran, while the case ran (schedstat run_delay)")
    gpu_other_processes: int = _f("trust", "int", "count", "other compute processes on the case's GPU (NVML; null "
                                  "without nvidia-ml-py or on cpu)")
    gpu_sm_clock_mhz: int = _f("trust", "int", "MHz", "SM clock right after the timed blocks (NVML)")
    gpu_temperature_c: int = _f("trust", "int", "degC", "GPU temperature right after the timed blocks (NVML)")
    gpu_throttle_reasons: list = _f("trust", "list[str]", "", "clock-event (throttle) reasons active right after "
                                    "the timed blocks (NVML), e.g. sw_power_cap, hw_thermal_slowdown")
    # memory
    peak_bytes: int = _f("memory", "int", "bytes", "peak allocated during one step above what was held just "
                         "before it (no gradients held before a train step); same definition on cpu and cuda")
    peak_bytes_source: str = _f("memory", "str", "", "the instrument behind peak_bytes")
    held_bytes: int = _f("memory", "int", "bytes", "held at that baseline: parameters, buffers, the input batch, "
                         "gradients and optimizer state if any; held_bytes + peak_bytes is what must fit")
    saved_bytes: int = _f("memory", "int", "bytes", "tensors autograd holds for backward when the forward returns "
                          "(saved by graphs still alive then, or kept on a custom autograd Function's context, as "
                          "checkpointing keeps the RNG state), excluding parameters, buffers and the input (held "
                          "anyway); not what backward saves while it runs (checkpointing's recomputation)")
    param_bytes: int = _f("memory", "int", "bytes", "parameter storage")
    grad_bytes: int = _f("memory", "int", "bytes", "gradient storage after one train step (0 for forward)")
    tracked_peak_bytes: int = _f("memory", "int", "bytes", "cross-check: the peak of tensor storages a dispatch-level "
                                 "tracker follows; it cannot see what C++ kernels allocate for themselves, and "
                                 "counts storages, not allocator calls, so it can differ both ways")
    cuda_max_allocated_bytes: int = _f("memory", "int", "bytes", "torch.cuda.max_memory_allocated over the "
                                       "measured step, absolute (null on cpu)")
    requested_peak_bytes: int = _f("memory", "int", "bytes", "peak of the bytes the step's tensors requested above "
                                   "the baseline (torch.cuda.memory_stats requested_bytes): peak_bytes before the "
                                   "caching allocator rounds requests up to its blocks (null on cpu, where "
                                   "peak_bytes counts requested bytes already)")
    cuda_max_reserved_bytes: int = _f("memory", "int", "bytes", "torch.cuda.max_memory_reserved over the "
                                      "measured step, absolute (null on cpu)")
    rss_peak_bytes: int = _f("memory", "int", "bytes", "peak resident set of the whole measuring process, "
                             "torch and the model included (--isolate case only)")
    memory_budget_bytes: int = _f("memory", "int", "bytes", "the budget a `gradbench capacity` search measured "
                                  "this batch for (null outside capacity)")
    capacity_batch_size: int = _f("memory", "int", "count", "the largest batch that search found to fit this case "
                                  "(0: not even the smallest); the same on every batch it measured")
    # behaviour: observed during real forwards, never inferred from module types
    dropout_active: bool = _f("behaviour", "bool", "", "the forward is stochastic in this mode: outputs differ "
                              "between two RNG seeds, and repeat under the same seed or an operator drew "
                              "random numbers; where outputs cannot show a difference (no tensor, NaN "
                              "everywhere), an operator drew random numbers (dropout_evidence says which)")
    stochastic_ops: list = _f("behaviour", "list[str]", "", "operators that drew random numbers in the forward, as "
                              "dispatched (under inference_mode composite ones such as aten::dropout)")
    dropout_evidence: str = _f("behaviour", "str", "", "what decided dropout_active: outputs (compared under two "
                               "seeds), or random_ops (stochastic_ops, where the outputs could not say: no tensor, "
                               "NaN everywhere, or not repeating under one seed); null where neither was observed "
                               "(a compiled forward whose outputs could not say)")
    bn_batch_stats: bool = _f("behaviour", "bool", "", "BatchNorm normalised by batch statistics (null: no BatchNorm)")
    bn_stats_updated: bool = _f("behaviour", "bool", "", "BatchNorm running statistics changed (null: no BatchNorm)")
    output_dtype: str = _f("behaviour", "str", "", "dtype of the forward's first floating-point output (autocast "
                           "shows here)")
    graph_recorded: bool = _f("behaviour", "bool", "", "the output has an autograd graph")
    grads_computed: int = _f("behaviour", "int", "count", "parameters a backward reaches (train_step: that got a "
                             "gradient)")
    fastpath: bool = _f("behaviour", "bool", "", "PyTorch's fused transformer kernels ran (null: no transformer "
                        "layer)")
    max_abs_diff_vs_eval_no_grad: float = _f("behaviour", "float", "", "largest output difference from the same "
                                             "input under eval_no_grad; null where the outputs differ in number "
                                             "or shape")
    # energy: NVML's total energy counter around the timed blocks (measure/energy.py); null on cpu
    energy_sampling: bool = _f("energy", "bool", "", "--energy-sampling: timing went on until its window spanned 10 "
                               "updates of the energy counter, so that energy_j could be measured (null on cpu)")
    energy_j: float = _f("energy", "float", "J", "energy the GPU used per step over the timed blocks (whole GPU, "
                         "idle gaps between blocks included); null on cpu, and on cuda where energy_note says why")
    samples_per_joule: float = _f("energy", "float", "1/J", "batch_size / energy_j")
    energy_note: str = _f("energy", "str", "", "on cuda: the reading's resolution (+-period/window), or why "
                          "energy_j is null (no NVML, no counter, a window shorter than 10 counter updates)")
    # work
    flops: int = _f("work", "int", "flop", "floating-point operations of one step (torch.utils.flop_counter)")
    flops_per_s: float = _f("work", "float", "flop/s", "flops / time_median_s")
    # provenance
    run_id: str = _f("provenance", "str", "", "one sweep's identifier")
    repeat: int = _f("provenance", "int", "", "which of the sweep's --repeat K worker processes measured it (1..K)")
    attempt: int = _f("provenance", "int", "", "1 for a case's first measurement in its process; 2 and up for "
                      "measurements again under --retry-untrusted (every attempt is kept)")
    timestamp: str = _f("provenance", "str", "ISO 8601", "when the record was made (UTC)")
    gradbench_version: str = _f("provenance", "str", "", "gradbench version")
    git_commit: str = _f("provenance", "str", "", "commit of the gradbench checkout, or asv's commit")
    machine: str = _f("provenance", "str", "", "host name (asv: machine name)")
    cpu: str = _f("provenance", "str", "", "CPU model")
    cpu_count: int = _f("provenance", "int", "count", "logical CPUs")
    platform: str = _f("provenance", "str", "", "operating system")
    gpu: str = _f("provenance", "str", "", "GPU name (null without one)")
    gpu_count: int = _f("provenance", "int", "count", "visible GPUs")
    driver: str = _f("provenance", "str", "", "NVIDIA driver version")
    cuda: str = _f("provenance", "str", "", "CUDA version torch was built with")
    torch: str = _f("provenance", "str", "", "torch version")
    python: str = _f("provenance", "str", "", "Python version")
    launcher: str = _f("provenance", "str", "", "local, or slurm when the measuring process ran inside a Slurm job")
    slurm_job_id: int = _f("provenance", "int", "", "the Slurm job (for a job array, the array's job id); null "
                           "outside Slurm")
    slurm_array_task_id: int = _f("provenance", "int", "", "the task of the Slurm job array; null outside one")
    slurm_state: str = _f("provenance", "str", "", "for a case its Slurm task ended without measuring: the task's "
                          "Slurm state (CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...); null otherwise")
    host: str = _f("provenance", "str", "", "host name of the node that measured (the asv machine name may differ)")
    gpu_index: int = _f("provenance", "int", "", "the one GPU the measuring process saw, as CUDA_VISIBLE_DEVICES "
                        "named it (set by --gpus; by Slurm, which may number a job's GPUs from 0); null otherwise")
    source: str = _f("provenance", "str", "", "the front-end that measured it: gradbench, asv, pytest-benchmark, or "
                     "capacity (a `gradbench capacity` search's memory passes, and its timing with --time)")
    source_file: str = _f("provenance", "str", "", "the file it was read from (null in files; set when reading)")


SCHEMA = {f.name: f.metadata for f in fields(Fields)}
RECORD_FIELDS = tuple(SCHEMA)
BEHAVIOUR_FLAGS = tuple(name for name, meta in SCHEMA.items()
                        if meta["group"] == "behaviour" and meta["kind"] == "bool")

# A record's three parts, by schema group. format_version and kind (group "record") say what the record
# itself is; every record carries both, outside the parts.
PARTS = {
    "case": ("identity",),  # what was run: the case's identity and the settings it was measured under
    "measured": ("outcome", "time", "compile", "trust", "memory", "behaviour", "energy", "work"),
    "environment": ("provenance",),  # where and with what it ran, and the front end that measured it
}
PART_FIELDS = {part: tuple(name for name, meta in SCHEMA.items() if meta["group"] in groups)
               for part, groups in PARTS.items()}
LIST_FIELDS = tuple(name for name, meta in SCHEMA.items() if meta["kind"].startswith("list["))


def new_record(**values) -> dict:
    """A draft: the dict measuring code fills in while a case runs, every declared field present (null where
    not given), of the current format and, unless told otherwise, a case; an undeclared name raises
    InvalidRecord (a TypeError). The writer freezes it into a Record, checking every value."""
    undeclared = _undeclared(values)
    if undeclared:
        raise InvalidRecord(undeclared)
    record = {**_NULLS, "format_version": FORMAT_VERSION, "kind": "case", **values}
    if record["timestamp"] is None:
        record["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return record


_NULLS = dict.fromkeys(RECORD_FIELDS)


class InvalidRecord(TypeError):
    """Values a Record refuses: undeclared names, values not of their field's kind or range."""

    def __init__(self, problems: list[str]):
        super().__init__(f"record breaks the schema (gradbench/record.py): {'; '.join(problems)}")
        self.problems = problems


class Record(Mapping):
    """One record, frozen: its case, what was measured and its environment (``.case``, ``.measured``,
    ``.environment``: read-only mappings of PART_FIELDS), its ``format_version`` and ``kind``. Every value
    is checked when it is made (kind_errors), lists are held as tuples, and nothing changes it after:
    ``replace`` makes a changed copy, checked again. It reads as the flat mapping of field names that a
    JSON line is (``record["status"]``, ``record.get(...)``, ``dict(record)``); ``to_json`` gives that line's
    object.

    ``Record(draft)`` is a record gradbench writes: declared fields only, NaN and infinity as null.
    ``Record.read(values)`` is one read from a file, already in the current format (migrate.py): unknown
    fields of an old file are kept, read-only (``.unknown``), and refused if it is written again."""

    __slots__ = ("_values", "_unknown")

    def __init__(self, values: Mapping | None = None, /, **more):
        values = {"format_version": FORMAT_VERSION, "kind": "case", **(values or {}), **more}
        undeclared = _undeclared(values)
        values = finite_or_none(values)
        problems = undeclared + _errors(values)
        if problems:
            raise InvalidRecord(problems)
        self._fill(values)

    @classmethod
    def read(cls, values: Mapping) -> Record:
        """A record read from a file, migrated: fields it lacks are null, unknown ones kept; InvalidRecord
        (its ``problems``) if a declared field is not of its kind or range, or format_version or kind is
        not there."""
        problems = _errors(values)
        if problems:
            raise InvalidRecord(problems)
        record = cls.__new__(cls)
        record._fill(values)
        return record

    def _fill(self, values: Mapping) -> None:
        flat = {**_NULLS, **values}  # declared fields in schema order, then unknown ones
        for name in LIST_FIELDS:
            if flat[name] is not None:
                flat[name] = tuple(flat[name])
        unknown = tuple(name for name in flat if name not in SCHEMA)
        for name in unknown:
            flat[name] = _frozen(flat[name])
        object.__setattr__(self, "_values", flat)
        object.__setattr__(self, "_unknown", unknown)

    def replace(self, **changes) -> Record:
        """This record with ``changes`` to declared fields (NaN and infinity as null), checked again."""
        undeclared = _undeclared(changes)
        changes = finite_or_none(changes)
        header = {name: changes.get(name, self._values[name]) for name in ("format_version", "kind")}
        problems = undeclared + kind_errors(changes) + (_header_errors(header) if header.keys() & changes else [])
        if problems:
            raise InvalidRecord(problems)
        record = type(self).__new__(type(self))
        record._fill({**self._values, **changes})
        return record

    def to_json(self) -> dict:
        """The record as a JSON line holds it: flat, declared fields in schema order (then unknown ones kept
        from an old file), lists as lists; never NaN or infinity."""
        flat = dict(self._values)
        for name in (*LIST_FIELDS, *self._unknown):
            flat[name] = finite_or_none(flat[name])
        return flat

    @property
    def format_version(self) -> int:
        return self._values["format_version"]

    @property
    def kind(self) -> str:
        return self._values["kind"]

    @property
    def case(self) -> Mapping:
        """What was run: identity and measurement settings."""
        return self._part("case")

    @property
    def measured(self) -> Mapping:
        """What was measured: outcome, time, compile, trust, memory, behaviour, energy, work."""
        return self._part("measured")

    @property
    def environment(self) -> Mapping:
        """Where and with what it ran, and the front end that measured it (provenance)."""
        return self._part("environment")

    @property
    def unknown(self) -> Mapping:
        """Fields an old file held that this schema does not declare (empty for records gradbench makes)."""
        return MappingProxyType({name: self._values[name] for name in self._unknown})

    def _part(self, part: str) -> Mapping:
        return MappingProxyType({name: self._values[name] for name in PART_FIELDS[part]})

    # the flat mapping of field names, read-only
    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name) -> bool:
        return name in self._values

    def get(self, name: str, default=None):
        return self._values.get(name, default)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def values(self):
        return self._values.values()

    def __eq__(self, other) -> bool:
        if isinstance(other, Record):
            return self._values == other._values
        return self.to_json() == dict(other.items()) if isinstance(other, Mapping) else NotImplemented

    __hash__ = None  # equal to a dict of the same fields, which is not hashable either

    def __setattr__(self, name, value):
        raise AttributeError(f"a Record is frozen: record.replace({name}=...) makes a changed copy")

    def __delattr__(self, name):
        raise AttributeError("a Record is frozen")

    def __setitem__(self, name, value):
        raise TypeError(f"a Record is frozen: record.replace({name}=...) makes a changed copy")

    def __delitem__(self, name):
        raise TypeError("a Record is frozen")

    def __reduce__(self):  # pickle and copy: made again from its JSON, checked again
        return Record.read, (self.to_json(),)

    def __repr__(self) -> str:
        shown = ("kind", *CASE_KEY_FIELDS, "status")
        return f"Record({', '.join(f'{k}={self._values[k]!r}' for k in shown)}, ...)"


def _frozen(value):
    """An unknown field's value, read-only: lists as tuples, objects as read-only mappings."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _header_errors(values: Mapping) -> list[str]:
    """Every record carries format_version and kind, and a record in memory is of the current format."""
    found = [f"{name} is null: every record carries one" for name in ("format_version", "kind")
             if values.get(name) is None]
    version = values.get("format_version")
    if _is_kind(version, "int") and version != FORMAT_VERSION:
        found.append(f"format_version={short_repr(version)} is not {FORMAT_VERSION}: a record is of the current "
                     "format (migrate.py brings older ones to it)")
    return found


def _errors(values: Mapping) -> list[str]:
    return kind_errors(values) + _header_errors(values)


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _is_kind(value, kind: str) -> bool:
    if kind.startswith("list["):  # null stands in for a non-finite number, in lists too (a Record's are tuples)
        return isinstance(value, (list, tuple)) and all(v is None or _is_kind(v, kind[5:-1]) for v in value)
    if kind == "bool":
        return isinstance(value, bool)
    if not isinstance(value, _KINDS[kind]) or isinstance(value, bool):
        return False
    if kind == "int":  # what a DataFrame column (int64) holds
        return -(2 ** 63) <= value < 2 ** 63
    if kind == "float":  # finite, and an integer that a float can hold
        return abs(value) < 2 ** 1023 if isinstance(value, int) else math.isfinite(value)
    return True


# Units of amounts that cannot be below zero: a negative peak_bytes is a crafted or broken file, never a measurement.
NON_NEGATIVE_UNITS = ("bytes", "count")


def kind_errors(record: Mapping) -> list[str]:
    """Declared fields whose values are not of their kind, or out of its range (a reader skips such a
    record): an int beyond int64, a float that is not finite, bytes or a count below 0, a status that is
    not one of STATUSES, a kind not one of KINDS. (One pass over the fields: every record read is checked.)"""
    mistyped, below = [], []
    for name, kind, non_negative in _CHECKS:
        value = record.get(name)
        if value is None:
            continue
        if not _is_kind(value, kind):
            mistyped.append(f"{name}={short_repr(value)} is not {kind}")
        elif non_negative and value < 0:
            below.append(f"{name}={short_repr(value)} is below 0")
    problems = mistyped + below
    if record.get("status") is not None and record["status"] not in STATUSES:
        problems.append(f"status={short_repr(record['status'])} is not one of {', '.join(STATUSES)}")
    if record.get("kind") is not None and record["kind"] not in KINDS:
        problems.append(f"kind={short_repr(record['kind'])} is not one of {', '.join(KINDS)}")
    return problems


_CHECKS = tuple((name, meta["kind"], meta["unit"] in NON_NEGATIVE_UNITS) for name, meta in SCHEMA.items())


def short_repr(value) -> str:
    """A value as an error message shows it: repr (control characters escaped), cut to 60 characters."""
    big = isinstance(value, int) and abs(value) >= 10 ** 30  # repr of a 5000-digit int raises
    text = f"an integer of {value.bit_length()} bits" if big else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _undeclared(names) -> list[str]:
    return [f"undeclared field {name!r}" for name in names if name not in SCHEMA]


def type_errors(record: Mapping) -> list[str]:
    """What in ``record`` breaks the schema: undeclared names, wrong kinds. Empty when it conforms."""
    return _undeclared(record) + kind_errors(record)


def finite_or_none(value):
    """NaN and infinity become None (JSON has neither), inside lists and dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, Mapping):  # a dict, a Record, an unknown field's read-only object
        return {k: finite_or_none(v) for k, v in value.items()}
    return value


def identity_value(record, name: str):
    """An identity field's value, with a null read as what files from before the field meant."""
    value = record.get(name)
    return IDENTITY_DEFAULTS.get(name) if value is None else value


def case_key(record: dict) -> tuple:
    return tuple(identity_value(record, k) for k in CASE_KEY_FIELDS)


def case_label(record, omit: tuple = ()) -> str:
    """A case (a record, a row, or a Case's identity) as people read it: 'mlp/tiny b8 cpu float32 eval
    forward'; ``omit`` drops identity fields a table shows elsewhere (its columns, the compared side)."""
    batch = record["batch_size"]
    if isinstance(batch, float) and batch.is_integer():  # a DataFrame column with a null in it is float
        batch = int(batch)
    parts = {"model": f"{record['model']}/{record['size']}", "batch_size": f"b{batch}",
             **{k: str(record[k]) for k in ("device", "dtype") if k not in omit},
             **{k: f"{k}={v}" for k in IDENTITY_DEFAULTS if k not in omit
                for v in [identity_value(record, k)] if v != IDENTITY_DEFAULTS[k] and v == v},
             **{k: str(record[k]) for k in ("mode", "step") if k not in omit}}
    return " ".join(v for k, v in parts.items() if k not in omit)


def schema_markdown() -> str:
    """The field table the README carries, generated from the declaration above."""
    lines = ["| field | group | kind | unit | meaning |", "|---|---|---|---|---|"]
    for name, meta in SCHEMA.items():
        lines.append(f"| `{name}` | {meta['group']} | {meta['kind']} | {meta['unit'] or '-'} | {meta['doc']} |")
    return "\n".join(lines)
