"""`gradbench run | report | compare | explain | list | env | selfcheck | case | asv-machine`: parse the
command line and dispatch to the library. Nothing here measures, reads or writes results itself.

Bad input anywhere gives one line on stderr naming the bad value and the valid ones, exit status 2,
no traceback, and no results file touched; an output that cannot be written gives one line and
exit status 1, with what was written before it intact (errors.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from .version import __version__
from .errors import EXIT_BAD_INPUT, EXIT_WRITE_FAILED, BadInput, WriteFailed, cannot_write
from .record import finite_or_none
from .settings import argument, list_arg
from .text import terminal_text


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"gradbench: error: {message}\n")


SECONDS = argument(float, above=0)  # finite, > 0
INTEGER = argument(int)  # ASCII decimal digits: int() would take "1_000"


def _add_run(sub):
    p = sub.add_parser("run", help="sweep the grid and write records to JSONL",
                       description="Sweep models x sizes x batch sizes x devices x dtypes x modes x steps.")
    p.add_argument("--models", nargs="+", help="built-in names or MODULE:FUNCTION / file.py:FUNCTION "
                   "(default: mlp cnn transformer)")
    p.add_argument("--sizes", nargs="+", help="tiny small medium large (default: tiny small)")
    p.add_argument("--batch-sizes", nargs="+", help="default: 1 8 64")
    p.add_argument("--devices", nargs="+", help="cpu cuda (default: cpu, plus cuda when available)")
    p.add_argument("--dtypes", nargs="+", help="float32 bfloat16 float16 (default: float32)")
    p.add_argument("--modes", nargs="+", help="mode names, or 'all' for the ten (default: the five core "
                   "modes plus eval_inference_mode)")
    p.add_argument("--steps", nargs="+", help="forward train_step (default: both)")
    p.add_argument("--compile", nargs="+", help="torch.compile modes: none default max-autotune, and "
                   "reduce-overhead on cuda (default: none, eager); a workload's modes share one compiled model")
    p.add_argument("--autocast", nargs="+", help="torch.autocast dtypes around the forward: none bfloat16, and "
                   "float16 on cuda (default: none)")
    p.add_argument("--compile-cold", action="store_true", default=None,
                   help="reset the compiler's caches (and skip inductor's on-disk cache) before every mode, "
                        "for cold compile times (default: modes share what earlier modes compiled)")
    p.add_argument("--energy-sampling", action="store_true", default=None,
                   help="cuda: time each case until its window spans 10 updates of NVML's energy counter (about "
                        "1 s per case on an H200), so that energy_j is measured (default off: energy only where the "
                        "timed window is that long anyway)")
    p.add_argument("--head", metavar="NAME", help="the module finetune_head trains, as model.named_modules() names "
                   "it (default: the last nn.Linear the output depends on, observed)")
    p.add_argument("--threads", type=INTEGER, help="torch threads per worker (default: torch's choice)")
    p.add_argument("--quick", action="store_true", default=None,
                   help="a sweep of about half a minute: tiny models, batch 8 and 64")
    p.add_argument("--config", help="a TOML file with these settings (command-line options win)")
    p.add_argument("--out", help="JSONL file to append to (default: results/runs/RUN_ID.jsonl)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="skip cases already in --out with status ok or not_applicable (same settings only)")
    p.add_argument("--shard", help="run shard I of N (I/N); the shards together are the sweep")
    p.add_argument("--timeout", type=float, help="seconds before a case's worker is killed; a user model's "
                   "import has as long again (default 600)")
    p.add_argument("--isolate", choices=("worker", "case"), help="a worker per sweep (default) or a fresh "
                   "process per case (also records rss_peak_bytes)")
    p.add_argument("--max-time", type=float, help="seconds of timing per case (default 0.5; --quick 0.2)")
    p.add_argument("--seed", type=INTEGER, help="weights, inputs and mode order (default 0)")
    p.add_argument("--cudnn-benchmark", action="store_true", default=None,
                   help="set torch.backends.cudnn.benchmark for every case (per-shape autotuning; CUDA only; "
                        "default off, as in torch)")
    p.add_argument("--repeat", type=INTEGER, metavar="K", help="measure every case in K separate worker processes, "
                   "interleaved, so that compare can see the variation between processes (default 1)")
    p.add_argument("--retry-untrusted", type=INTEGER, metavar="N", help="measure a case whose time is untrusted "
                   "(contention, or an imprecise median) again at the end of the sweep, up to N times; every "
                   "attempt is kept (default 0)")
    p.add_argument("--no-report", action="store_true", default=None, help="do not write the report")
    p.add_argument("--gpus", metavar="IDS", help="one worker per GPU at once, each pinned to its GPU: 0,1,2,3 or "
                   "all (cuda cases only: concurrent workers on a CPU would disturb each other's timings)")
    slurm = p.add_argument_group("Slurm", "--launcher slurm: the sweep as one job array, submitted through "
                                 "submitit, merged into --out (README: Clusters)")
    slurm.add_argument("--launcher", choices=("local", "slurm"), help="where workers run (default local)")
    slurm.add_argument("--jobs", type=INTEGER, metavar="N", help="array tasks; each measures whole workloads (default 1)")
    slurm.add_argument("--slurm-partition", metavar="NAME", help="partition (default: the cluster's)")
    slurm.add_argument("--slurm-gpus-per-task", type=INTEGER, metavar="N", help="GPUs per task")
    slurm.add_argument("--slurm-cpus-per-task", type=INTEGER, metavar="N", help="CPUs per task (also the torch threads "
                       "unless --threads is given)")
    slurm.add_argument("--slurm-time", type=INTEGER, metavar="MIN", help="time limit per task in minutes (default 60)")
    slurm.add_argument("--slurm-parallel", type=INTEGER, metavar="K", help="at most K tasks at once (Slurm's %%K); 1 when "
                       "tasks share a node and must not disturb each other's timings (default: all)")
    slurm.add_argument("--slurm-constraint", metavar="FEATURE", help="node features, e.g. a GPU type (a100, h100) "
                       "to compare GPUs")
    slurm.add_argument("--slurm-option", dest="slurm_options", action="append", metavar="KEY=VALUE",
                       help="any other submitit Slurm parameter (mem=16G, account=X, qos=Y, exclude=...); repeatable")
    return p


def cmd_run(args) -> int:
    from .runner import execute
    from .settings import run_settings

    return execute(run_settings(args))


# ---------------------------------------------------------------- explain, list, env, case


def cmd_explain(args) -> int:
    from .explain import measure_modes
    from .report.explain import print_explanation

    models = list_arg(args.models)
    if models == []:
        raise BadInput("--models is empty; name built-in models (mlp cnn transformer) or MODULE:FUNCTION")
    output = measure_modes(models or ["mlp", "transformer"], args.size, args.batch_size, args.device, args.dtype,
                           args.max_time, args.cudnn_benchmark, args.compile, args.autocast, args.head)
    if args.format == "json":
        print(json.dumps(finite_or_none(output), indent=1, allow_nan=False))
    else:
        print_explanation(output, args.format)
    return 0


def cmd_list(args) -> int:
    import torch

    from .models import BUILTIN_MODELS, SIZES, build_model, parameter_count
    from .modes import MODES

    print("models (exact parameter counts):")
    for family in BUILTIN_MODELS:
        counts = []
        for size in SIZES:
            with torch.device("meta"):  # count without allocating 100M-parameter models
                model, _ = build_model(family, size)
            counts.append(f"{size} {parameter_count(model):,}")
        print(f"  {family:12s} " + ", ".join(counts))
    print("  MODULE:FUNCTION or path/to/file.py:FUNCTION  your own: FUNCTION(size=SIZE) -> (model, make_input)")
    print("\nmodes:")
    for mode in MODES.values():
        print(f"  {mode.name:20s} {mode.description}")
    return 0


def cmd_env(args) -> int:
    import torch

    from .env import fingerprint

    info = {**fingerprint(), "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for key, value in info.items():
            print(f"{key:18s} {value}")
    return 0


def _load_inputs(paths: list[str]):
    from .results import load

    try:
        return load(paths)
    except ValueError as exc:  # ResultsFileError: empty, truncated, foreign
        raise BadInput(str(exc)) from None


def cmd_report(args) -> int:
    from .report.document import write_report
    from .runner import report_dir_for

    if args.out == "":
        raise BadInput("--out is empty; name a folder for the report, or leave --out out")
    df = _load_inputs(args.results)
    out = args.out or (report_dir_for(args.results[0]) if len(args.results) == 1 and
                       args.results[0].endswith(".jsonl") else os.path.join("results", "report"))
    paths = write_report(df, out, title=args.title or "gradbench report: " + ", ".join(args.results))
    print(terminal_text(f"report: {paths['html']}") + "\n        " + terminal_text(paths['markdown'])
          + f"\n        {len(paths['figures'])} figure files in " + terminal_text(os.path.join(out, 'figures')))
    return 0


def cmd_compare(args) -> int:
    from .report.compare import compare, print_comparison, write_comparison

    if args.out == "":
        raise BadInput("--out is empty; name a folder for the table and figure, or leave --out out")
    df = _load_inputs(args.results)
    try:
        table, sides, only = compare(df, args.by)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise BadInput(f"--out {args.out!r} is a file; compare --out takes a folder for the table and figure")
    if args.out:
        from .report.files import output_root

        output_root(args.out)  # refused before the comparison is printed: one line, not a table and then a line
    exit_status = print_comparison(table, sides, only, args.by, args.fail_above)
    if args.out:
        for path in write_comparison(df, table, args.by, args.out):
            print(f"wrote: {terminal_text(path)}")
    return exit_status


def cmd_capacity(args) -> int:
    """The largest batch each mode fits in a memory budget, measured (gradbench/capacity.py)."""
    from .capacity import capacity_of, capacity_table, default_budget, parse_size
    from .case import Case
    from .record import new_run_id
    from .storage import JsonlWriter
    from .modes import MODES
    from .report.tables import render
    from .settings import check_user_models

    for name in ("models", "sizes", "modes", "steps", "devices", "dtypes"):  # commas or spaces, as in run
        setattr(args, name, list_arg(getattr(args, name)))
        if not getattr(args, name):
            raise BadInput(f"--{name} is empty")
    modes = list(MODES) if args.modes == ["all"] else args.modes
    combos = [(m, s, d, t, mode, step) for m in args.models for s in args.sizes for d in args.devices
              for t in args.dtypes for step in args.steps for mode in modes]
    try:
        for m, s, d, t, mode, step in combos:
            Case(m, s, 1, d, t, mode, step).validate()
        budgets = {d: parse_size(args.memory_budget) if args.memory_budget is not None else default_budget(d)
                   for d in args.devices}
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.out is not None and (not args.out or os.path.isdir(args.out)):
        raise BadInput(f"--out {args.out!r} is not a file name; give a JSONL file to append the records to")
    check_user_models(args.models)
    rows, run_id = [], new_run_id()
    try:
        opened = JsonlWriter(args.out) if args.out else contextlib.nullcontext()
    except OSError as exc:
        raise cannot_write("--out", args.out, exc) from None
    with opened as writer:
        for i, (m, s, d, t, mode, step) in enumerate(combos, 1):
            print(f"gradbench: capacity {i}/{len(combos)}: {m}/{s} {d} {t} {mode} {step} in {budgets[d]} bytes",
                  file=sys.stderr)
            rows.append(capacity_of(m, s, d, t, mode, step, budgets[d], args.time, args.max_time, run_id=run_id,
                                    write=writer.write if writer else None))
    if args.out:
        print(f"gradbench: {writer.written} records appended to {args.out} (gradbench report reads them)",
              file=sys.stderr)
    if args.format == "json":
        print(json.dumps(finite_or_none(rows), indent=1, allow_nan=False))
    else:
        print(render(capacity_table(rows), "markdown" if args.format == "markdown" else "table"))
    return 0


def cmd_asv_machine(args) -> int:
    """Write this machine into asv's machine file, named by its GPU, with the GPU fields asv lacks."""
    from .env import default_asv_machine_name, update_asv_machine_file

    path, name = os.path.expanduser(args.file), args.machine or default_asv_machine_name()
    update_asv_machine_file(path, name)
    print(f"asv machine {name!r} written to {path}; run: asv run --machine {name}")
    return 0


def cmd_case(args) -> int:
    from .pipeline import run_case

    try:
        record = run_case(model=args.model, size=args.size, batch_size=args.batch_size, device=args.device,
                          dtype=args.dtype, mode=args.mode, step=args.step, max_time_s=args.max_time,
                          cudnn_benchmark=args.cudnn_benchmark, compile=args.compile, autocast=args.autocast,
                          compile_cold=args.compile_cold, energy_sampling=args.energy_sampling, head=args.head)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(finite_or_none(record), indent=1, allow_nan=False))
    return 0


def cmd_selfcheck(args) -> int:
    from .selfcheck import run_selfcheck

    if args.grid == "quick":
        if args.device is not None:
            raise BadInput("--device and --grid quick: the --quick sweep's cases are on cpu; give one of them")
        from .selfcheck import grid_agreement
        from .sweep import QUICK, Grid

        return grid_agreement(Grid(**QUICK), args.tolerance)
    if args.device is not None:
        from .case import Case

        try:
            Case(device=args.device).validate()
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    return run_selfcheck(tolerance=args.tolerance, devices=[args.device] if args.device else None)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradbench", description="Measure what eval(), no_grad(), requires_grad=False and "
                     "inference_mode really cost and save.")
    parser.add_argument("--version", action="version", version=f"gradbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)

    explain = sub.add_parser("explain", help="the measured behaviour of every mode on your model and machine")
    explain.add_argument("--models", nargs="+", help="default: mlp transformer")
    explain.add_argument("--size", default="small")
    explain.add_argument("--batch-size", type=argument(int, minimum=1), default=32)
    explain.add_argument("--device", default="cpu")
    explain.add_argument("--dtype", default="float32")
    explain.add_argument("--max-time", type=SECONDS, default=0.3, help="seconds of timing per mode (default 0.3)")
    explain.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    explain.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark on (CUDA)")
    explain.add_argument("--compile", default="none", help="torch.compile mode: none default max-autotune "
                         "reduce-overhead (cuda) (default: none)")
    explain.add_argument("--autocast", default="none", help="autocast dtype: none bfloat16 float16 (cuda) "
                         "(default: none)")
    explain.add_argument("--head", metavar="NAME", help="the module finetune_head trains (default: the last "
                         "nn.Linear the output depends on)")

    sub.add_parser("list", help="models with sizes and parameter counts; modes with their definitions")
    env = sub.add_parser("env", help="the machine fingerprint stored with every record")
    env.add_argument("--json", action="store_true")

    selfcheck = sub.add_parser("selfcheck", help="is this machine quiet enough to benchmark?")
    selfcheck.add_argument("--tolerance", type=argument(float, above=0), default=0.05,
                           help="warn where gradbench and torch.utils.benchmark differ by more (default 0.05)")
    selfcheck.add_argument("--grid", choices=("quick",), help="instead, compare on every case of the --quick sweep")
    selfcheck.add_argument("--device", help="check this device only: cpu, cuda or cuda:N (default: cpu, and cuda "
                           "where available)")

    report = sub.add_parser("report", help="figures, report.md and a self-contained report.html from results")
    report.add_argument("results", nargs="+", help="gradbench JSONL files, asv result folders, pytest-benchmark JSON")
    report.add_argument("--out", help="the report folder (default: beside a single JSONL file, else results/report)")
    report.add_argument("--title")

    compare = sub.add_parser("compare", help="the same cases side by side across machines, GPUs, versions")
    compare.add_argument("results", nargs="+", help="gradbench JSONL files, asv result folders, pytest-benchmark JSON")
    compare.add_argument("--by", choices=("machine", "gpu", "torch", "commit", "device", "run", "file", "harness",
                                          "compile", "autocast"),
                         required=True, help="what differs between the sides (run: run_id; file: input file; "
                                             "harness: gradbench run, asv or pytest-benchmark timing the same cases)")
    compare.add_argument("--fail-above", type=argument(float, minimum=0), metavar="PCT",
                         help="exit 1 when a case is slower by more than PCT percent, its whole CI beyond, or "
                              "when no case is on both sides; cases with untrusted timings are listed, never "
                              "failed on")
    compare.add_argument("--out", help="also write the table (CSV) and a figure into this folder")

    capacity = sub.add_parser("capacity", help="the largest batch each mode fits in a memory budget, measured")
    capacity.add_argument("--models", nargs="+", default=["transformer"], help="default: transformer")
    capacity.add_argument("--sizes", nargs="+", default=["small"], help="default: small")
    capacity.add_argument("--modes", nargs="+", default=["train", "eval", "no_grad", "eval_no_grad", "frozen"],
                          help="mode names, or 'all' (default: the five core modes)")
    capacity.add_argument("--steps", nargs="+", default=["forward"], help="forward train_step (default: forward)")
    capacity.add_argument("--devices", nargs="+", default=["cpu"], help="cpu cuda (default: cpu)")
    capacity.add_argument("--dtypes", nargs="+", default=["float32"], help="default: float32")
    capacity.add_argument("--memory-budget", metavar="SIZE", help="512MiB, 8GiB, 24GB or bytes; required on "
                          "cpu; on cuda the default is the device's free memory at start")
    capacity.add_argument("--time", action="store_true", help="also measure samples per second at the largest batch")
    capacity.add_argument("--max-time", type=SECONDS, default=2.0, help="with --time: seconds of timing per case "
                          "(default 2; a step at a large batch can take a second)")
    capacity.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    capacity.add_argument("--out", metavar="FILE.jsonl", help="also append the record of every batch measured "
                          "(gradbench report draws them: memory against batch, the budget, each mode's answer)")

    machine = sub.add_parser("asv-machine", help="name this machine for asv by its GPU, recording GPU, "
                             "driver, CUDA and torch in asv's machine file")
    machine.add_argument("--machine", help="the name (default: HOST-GPU, or HOST-cpu)")
    machine.add_argument("--file", default="~/.asv-machine.json", help="asv's machine file (default: %(default)s)")

    case = sub.add_parser("case", help="measure one case and print its record as JSON")
    case.add_argument("--model", default="mlp")
    case.add_argument("--size", default="small")
    case.add_argument("--batch-size", type=argument(int, minimum=1), default=32)
    case.add_argument("--device", default="cpu")
    case.add_argument("--dtype", default="float32")
    case.add_argument("--mode", default="eval_no_grad")
    case.add_argument("--step", default="forward")
    case.add_argument("--max-time", type=SECONDS, default=2.0, help="seconds of timing (default 2)")
    case.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark on (CUDA)")
    case.add_argument("--compile", default="none", help="none default max-autotune reduce-overhead (cuda)")
    case.add_argument("--autocast", default="none", help="none bfloat16 float16 (cuda)")
    case.add_argument("--compile-cold", action="store_true", help="reset the compiler's caches first")
    case.add_argument("--head", metavar="NAME", help="the module finetune_head trains (default: the last nn.Linear "
                      "the output depends on)")
    case.add_argument("--energy-sampling", action="store_true", help="cuda: time until the energy counter has "
                      "updated 10 times, so that energy_j is measured")
    return parser


COMMANDS = {"run": cmd_run, "explain": cmd_explain, "list": cmd_list, "env": cmd_env, "case": cmd_case,
            "selfcheck": cmd_selfcheck, "asv-machine": cmd_asv_machine, "report": cmd_report,
            "compare": cmd_compare, "capacity": cmd_capacity}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BadInput as exc:  # one line, whatever a file's name or contents put in it
        print(f"gradbench: error: {terminal_text(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WriteFailed as exc:
        print(f"gradbench: error: {terminal_text(exc)}", file=sys.stderr)
        return EXIT_WRITE_FAILED


if __name__ == "__main__":
    sys.exit(main())
