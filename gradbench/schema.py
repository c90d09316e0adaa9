"""The record schema, declared once: every field a record may hold, with its kind, unit, group and a
sentence (``Fields``); the groups' three parts (case, measured, environment); the format version and the
kinds of record. The docs' field table (docs/reference/record.md) is generated from it (``schema_markdown``,
gradbench/docs_pages.py). record.py makes and checks records of it.

Field names are a contract others depend on: add fields, never rename them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

# The record format; migrate.py brings older records to it on reading, one step per version:
# 1 = gradbench 0.1, 2 = 0.2, 3 = 0.3, 4 = 0.4 (before format_version was written), 5 = format_version and kind,
# 6 = seq_len and image_size (the input axes of text and image families).
FORMAT_VERSION = 6
# What a record stands for. Readers take every record as a case unless told apart, by source today.
# "ab_trial" is one side's measurement of one case in one round of `gradbench ab`; "prediction" is one case's
# memory computed on fake tensors by `gradbench predict` (status "unpredictable" where they cannot follow it).
KINDS = ("case", "capacity_probe", "prediction", "ab_trial")
STATUSES = ("ok", "error", "oom", "timeout", "crashed", "not_applicable", "unpredictable")  # the last: predictions only
# A case recorded with one of these is done; resume re-runs the others (failures may be transient).
DONE_STATUSES = ("ok", "not_applicable")
# One case identity, used everywhere a case is keyed or named. The words: a *workload* is the model built and
# its input batch (model, size, batch_size, device, dtype, seq_len, image_size; Case.workload_key adds the
# seed); a *group* is the
# cases whose modes share one model as it runs, the workload under one compile and autocast setting (under
# torch.compile a group's modes share one compiled model; Case.group_key); a *case* is one mode and step of
# a group; a *run* is one `gradbench run` (run_id); a *job* is a Slurm job array.
GROUP_FIELDS = ("model", "size", "batch_size", "device", "dtype", "compile", "autocast", "seq_len", "image_size")
# The input axes: a family takes at most one (models.Family.inputs); null where the model takes no such input.
INPUT_AXES = ("seq_len", "image_size")
CASE_KEY_FIELDS = (*GROUP_FIELDS, "mode", "step")
# What a record from before a field existed means by its null: files from before gradbench 0.4 ran eager.
# Reading JSONL fills these in already (migrate.py); asv and pytest-benchmark records, and records made
# in memory, still leave them null, so every reader keeps reading a null through this.
IDENTITY_DEFAULTS = {"compile": "none", "autocast": "none"}
# Settings that change what a case measures without changing which case it is: a results file holds
# one value of each, so that --resume never mixes two experiments under one case key.
MEASUREMENT_SETTINGS = ("seed", "threads", "max_time_s", "cudnn_benchmark", "compile_cold", "energy_sampling",
                        "head")


def _f(group: str, kind: str, unit: str, doc: str):
    return field(default=None, metadata={"group": group, "kind": kind, "unit": unit, "doc": doc})


@dataclass
class Fields:
    """The declaration of every field a Record holds. Every field may be null (not measured, not applicable,
    or not recorded by that source) but format_version and kind, which every Record carries."""

    # record: which format it is written in, and what it stands for
    format_version: int = _f("record", "int", "", "the record format (1 = gradbench 0.1 ... 4 = 0.4, 5 = this "
                             "field's own, 6 = seq_len and image_size); older records are migrated on reading, so "
                             "readers see the newest")
    kind: str = _f("record", "str", "", "case (one measured case), capacity_probe (one batch a `gradbench "
                   "capacity` search measured), ab_trial (one side's measurement of a case in one round of "
                   "`gradbench ab`), or prediction (a case's memory computed on fake tensors by `gradbench "
                   "predict`, nothing measured)")

    # identity: what was run
    model: str = _f("identity", "str", "", "built-in family (mlp, cnn, transformer; the zoo's resnet, vit, bert, "
                    "gpt2, llama) or MODULE:FUNCTION / file.py:FUNCTION")
    size: str = _f("identity", "str", "", "model size name")
    params: int = _f("identity", "int", "count", "number of parameter elements")
    batch_size: int = _f("identity", "int", "count", "inputs per step")
    seq_len: int = _f("identity", "int", "tokens", "sequence length of each input (--seq-len): text families and "
                      "user models given one; null where the model takes no such input (records of the toy "
                      "transformer from before format 6: 32)")
    image_size: int = _f("identity", "int", "pixels", "height and width of each input image (--image-size): image "
                         "families (resnet, vit); null where the model takes no such input")
    device: str = _f("identity", "str", "", "cpu, cuda or cuda:N")
    dtype: str = _f("identity", "str", "", "float32, bfloat16 or float16: parameters and floating-point inputs")
    mode: str = _f("identity", "str", "", "one of the ten modes (docs: Modes)")
    step: str = _f("identity", "str", "", "forward or train_step")
    compile: str = _f("identity", "str", "", "torch.compile mode the model ran under: none (eager), default, "
                      "max-autotune or reduce-overhead (null in files from before gradbench 0.4: none)")
    autocast: str = _f("identity", "str", "", "torch.autocast dtype around the forward: none, bfloat16 or float16 "
                       "(null in files from before gradbench 0.4: none)")
    threads: int = _f("identity", "int", "count", "torch intra-op threads of the measuring process")
    seed: int = _f("identity", "int", "", "seed of weights, input batch, behaviour probes and mode order")
    cudnn_benchmark: bool = _f("identity", "bool", "", "torch.backends.cudnn.benchmark during the case (null on cpu)")
    max_time_s: float = _f("identity", "float", "s", "the time cap per case the run asked for (--max-time)")
    case_memory_budget_bytes: int = _f("identity", "int", "bytes", "--memory-budget: the memory the run allowed each "
                                       "case (a built-in model's case whose weights, gradients and input alone "
                                       "exceed it, or what its device has, is not_applicable); null without it")
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
                              "random numbers; where outputs cannot show a difference (no tensor, NaN or "
                              "zero everywhere), an operator drew random numbers (dropout_evidence says which)")
    stochastic_ops: list = _f("behaviour", "list[str]", "", "operators that drew random numbers in the forward, as "
                              "dispatched (under inference_mode composite ones such as aten::dropout)")
    dropout_evidence: str = _f("behaviour", "str", "", "what decided dropout_active: outputs (compared under two "
                               "seeds), or random_ops (stochastic_ops, where the outputs could not say: no tensor, "
                               "NaN or zero everywhere, or not repeating under one seed); null where neither was "
                               "observed (a compiled forward whose outputs could not say)")
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
    energy_sampling: bool = _f("identity", "bool", "", "--energy-sampling (a measurement setting): timing went on until its window spanned 10 "
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
    # A/B trials (kind ab_trial, `gradbench ab`): which comparison, side and round a trial belongs to
    ab_id: str = _f("provenance", "str", "", "one `gradbench ab` comparison (kind ab_trial)")
    ab_side: str = _f("provenance", "str", "", "base or candidate: the side that measured this trial")
    ab_round: int = _f("provenance", "int", "", "the round (1, 2, ...); a round measures every case once on each side")
    ab_position: int = _f("provenance", "int", "", "the trial's place in its round's random order (0 first); a case's "
                          "two trials are adjacent")
    ab_revision: str = _f("provenance", "str", "", "the git revision the side ran, as given (null: the working tree "
                          "as it was, sides that differ by interpreter only)")
    ab_commit: str = _f("provenance", "str", "", "the commit that revision named")
    ab_repository: str = _f("provenance", "str", "", "the repository the revision is of (the model's; gradbench's for "
                            "built-in models)")
    ab_python: str = _f("provenance", "str", "", "the Python interpreter the side's workers ran under "
                        "(--base-python, --candidate-python)")
    ab_fail_above: float = _f("provenance", "float", "%", "the time gate the comparison ran with (--fail-above)")
    ab_fail_memory_above: float = _f("provenance", "float", "%", "the memory gate (--fail-memory-above)")


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


def schema_markdown() -> str:
    """The field table of docs/reference/record.md, generated from the declaration above (Fields)."""
    lines = ["| field | group | kind | unit | meaning |", "|---|---|---|---|---|"]
    for name, meta in SCHEMA.items():
        lines.append(f"| `{name}` | {meta['group']} | {meta['kind']} | {meta['unit'] or '-'} | {meta['doc']} |")
    return "\n".join(lines)
