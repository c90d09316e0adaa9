"""`gradbench run | explain | list | env | selfcheck | case`: thin front-ends over the library.

Bad input anywhere gives one line on stderr naming the bad value and the valid ones, exit status 2,
no traceback, and no results file touched.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from . import __version__
from .record import case_text, finite_or_none

EXIT_BAD_INPUT = 2
MAX_REPEAT = 100  # --repeat and --retry-untrusted: more is a typo, not a plan


class BadInput(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"gradbench: error: {message}\n")


def _list_arg(values) -> list[str] | None:
    """Accept `--x a,b`, `--x a b` and mixes; a value given twice counts once."""
    if values is None:
        return None
    return list(dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip()))


# ---------------------------------------------------------------- run


LIST_OPTIONS = ("models", "sizes", "batch_sizes", "devices", "dtypes", "modes", "steps")
BOOL_OPTIONS = ("quick", "resume", "cudnn_benchmark", "no_report")
STRING_OPTIONS = ("out", "shard", "isolate")
SEED_RANGE = (-(2 ** 63), 2 ** 64 - 1)  # what torch.manual_seed accepts
MAX_THREADS = 4096
RUN_OPTIONS = ("models", "sizes", "batch_sizes", "devices", "dtypes", "modes", "steps", "threads", "quick",
               "out", "resume", "shard", "timeout", "isolate", "max_time", "seed", "cudnn_benchmark", "no_report",
               "repeat", "retry_untrusted")


def _add_run(sub):
    p = sub.add_parser("run", help="sweep the grid and write records to JSONL",
                       description="Sweep models x sizes x batch sizes x devices x dtypes x modes x steps.")
    p.add_argument("--models", nargs="+", help="built-in names or MODULE:FUNCTION / file.py:FUNCTION "
                   "(default: mlp cnn transformer)")
    p.add_argument("--sizes", nargs="+", help="tiny small medium large (default: tiny small)")
    p.add_argument("--batch-sizes", nargs="+", help="default: 1 8 64")
    p.add_argument("--devices", nargs="+", help="cpu cuda (default: cpu, plus cuda when available)")
    p.add_argument("--dtypes", nargs="+", help="float32 bfloat16 float16 (default: float32)")
    p.add_argument("--modes", nargs="+", help="mode names, or 'all' for the nine (default: the five core "
                   "modes plus eval_inference_mode)")
    p.add_argument("--steps", nargs="+", help="forward train_step (default: both)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: torch's choice)")
    p.add_argument("--quick", action="store_true", default=None,
                   help="a sweep of about half a minute: tiny models, batch 8 and 64")
    p.add_argument("--config", help="a TOML file with these settings (command-line options win)")
    p.add_argument("--out", help="JSONL file to append to (default: results/runs/RUN_ID.jsonl)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="skip cases already in --out with status ok or not_applicable")
    p.add_argument("--shard", help="run shard I of N (I/N); the shards together are the sweep")
    p.add_argument("--timeout", type=float, help="seconds before a case's worker is killed (default 600)")
    p.add_argument("--isolate", choices=("worker", "case"), help="a worker per sweep (default) or a fresh "
                   "process per case (also records rss_peak_bytes)")
    p.add_argument("--max-time", type=float, help="seconds of timing per case (default 0.5; --quick 0.2)")
    p.add_argument("--seed", type=int, help="weights, inputs and mode order (default 0)")
    p.add_argument("--cudnn-benchmark", action="store_true", default=None,
                   help="set torch.backends.cudnn.benchmark for every case (per-shape autotuning; CUDA only; "
                        "default off, as in torch)")
    p.add_argument("--repeat", type=int, metavar="K", help="measure every case in K separate worker processes, "
                   "interleaved, so that compare can see the variation between processes (default 1)")
    p.add_argument("--retry-untrusted", type=int, metavar="N", help="measure a case whose time is untrusted "
                   "(contention, or an imprecise median) again at the end of the sweep, up to N times; every "
                   "attempt is kept (default 0)")
    p.add_argument("--no-report", action="store_true", default=None, help="do not write the report")
    return p


def _load_config(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise BadInput(f"cannot read --config {path!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"malformed --config {path!r}: {exc}") from None
    table = data.get("run", data)
    if not isinstance(table, dict):
        raise BadInput(f"bad [run] in --config {path!r}: expected a table of settings, got {table!r}")
    data = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(set(data) - set(RUN_OPTIONS))
    if unknown:
        raise BadInput(f"unknown key {unknown[0]!r} in --config {path!r}; valid keys: {', '.join(RUN_OPTIONS)}")
    for key, value in data.items():
        if key in BOOL_OPTIONS and not isinstance(value, bool):
            raise BadInput(f"bad {key!r} in --config {path!r}: {value!r}; expected true or false")
        if key in STRING_OPTIONS and not isinstance(value, str):
            raise BadInput(f"bad {key!r} in --config {path!r}: {value!r}; expected a string")
        if key in LIST_OPTIONS:
            if isinstance(value, (str, int)):
                value = [value]
            if not isinstance(value, list):
                raise BadInput(f"bad value for {key!r} in --config {path!r}: expected a list")
            if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
                raise BadInput(f"bad value for {key!r} in --config {path!r}: {value!r}; expected names or numbers")
            data[key] = list(dict.fromkeys(str(v) for v in value))
    return data


def _settings(args) -> dict:
    settings = _load_config(args.config) if args.config else {}
    for key in RUN_OPTIONS:
        value = getattr(args, key, None)
        if key in LIST_OPTIONS:
            value = _list_arg(value)
        if value is not None:
            settings[key] = value
    return settings


def _batch_sizes(values: list[str]) -> tuple[int, ...]:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            raise BadInput(f"bad batch size {v!r}; batch sizes are integers >= 1") from None
    return tuple(dict.fromkeys(out))


def _number(settings: dict, key: str, kind, default=None, minimum=None, maximum=None):
    """A numeric setting (from the command line or --config), or BadInput naming it. Strict: a config's
    true, "3" or 2.5 is not an integer, and NaN or infinity is no number of seconds."""
    value = settings.get(key, default)
    if value is None:
        return None
    name = f"--{key.replace('_', '-')}"
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadInput(f"bad {name} {value!r}; expected {what}")
    if not math.isfinite(value):
        raise BadInput(f"bad {name} {value!r}; expected a finite number")
    number = kind(value)
    if minimum is not None and not number >= minimum:
        raise BadInput(f"bad {name} {value!r}; it must be >= {minimum:g}")
    if maximum is not None and not number <= maximum:
        raise BadInput(f"bad {name} {value!r}; it must be <= {maximum:g}")
    return number


def build_grid(settings: dict):
    """The Grid a run's settings describe (defaults filled in), every case validated."""
    from .modes import MODES
    from .sweep import QUICK, Grid, default_devices

    base = dict(QUICK) if settings.get("quick") else {}
    fields = {}
    for key in ("models", "sizes", "devices", "dtypes", "modes", "steps"):
        if key in settings:
            fields[key] = tuple(settings[key])
    if fields.get("modes") == ("all",):
        fields["modes"] = tuple(MODES)
    if "batch_sizes" in settings:
        fields["batch_sizes"] = _batch_sizes(settings["batch_sizes"])
    if "max_time" in settings:
        fields["max_time_s"] = _number(settings, "max_time", float)
    if "seed" in settings:
        fields["seed"] = _number(settings, "seed", int, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
    if "cudnn_benchmark" in settings:
        if not isinstance(settings["cudnn_benchmark"], bool):
            raise BadInput(f"bad cudnn_benchmark {settings['cudnn_benchmark']!r}; expected true or false")
        fields["cudnn_benchmark"] = settings["cudnn_benchmark"]
    grid = Grid(**{**base, "devices": default_devices(), **fields})
    for name in LIST_OPTIONS:
        if not getattr(grid, name):
            raise BadInput(f"--{name.replace('_', '-')} is empty")
    # Validate each distinct value once (cheap, and the message names the value).
    from .case import Case

    for model in grid.models:
        for size in grid.sizes:
            Case(model=model, size=size).validate()
    for case in (Case(batch_size=b) for b in grid.batch_sizes):
        case.validate()
    for device in grid.devices:
        for dtype in grid.dtypes:
            Case(device=device, dtype=dtype).validate()
    for mode in grid.modes:
        Case(mode=mode).validate()
    for step in grid.steps:
        Case(step=step).validate()
    if grid.max_time_s <= 0:
        raise BadInput(f"bad --max-time {grid.max_time_s:g}; it must be > 0 seconds")
    return grid


def _check_user_models(models) -> None:
    """A user model that cannot even be imported is bad input, not a result."""
    from .models import _load_factory, is_user_model

    for model in models:
        if is_user_model(model):
            _load_factory(model)


def _default_out(run_id: str) -> str:
    return os.path.join("results", "runs", f"{run_id}.jsonl")


class ProgressPrinter:
    """A bar with ETA on a terminal; one line per case otherwise (CI logs)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, record: dict, progress) -> None:
        eta = progress.eta_s()
        eta_text = "--:--" if eta is None else time.strftime("%M:%S", time.gmtime(eta)) if eta < 3600 else \
            f"{eta / 3600:.1f} h"
        what = case_text(record)
        result = record["status"]
        if record["status"] == "ok":
            result = f"{record['time_median_s'] * 1e3:.3f} ms"
            if record.get("time_trusted") is False:
                result += " (untrusted)"
        if (record.get("repeat") or 1) > 1 or (record.get("attempt") or 1) > 1:
            what += f" [process {record['repeat']}, attempt {record['attempt']}]"
        if self.tty:
            width = 24
            filled = int(width * progress.done / max(progress.total, 1))
            line = f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} ETA {eta_text}  " \
                   f"{what}: {result}"
            self.stream.write(line[:160].ljust(160))
            if progress.done == progress.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{progress.done}/{progress.total}] ETA {eta_text} {what}: {result}\n")
        self.stream.flush()


def cmd_run(args) -> int:
    from .record import new_run_id
    from .results import ResultsLock, ResultsLocked
    from .sweep import ISOLATION, parse_shard, shard

    settings = _settings(args)
    try:
        grid = build_grid(settings)
        _check_user_models(grid.models)
        cases = grid.cases()
        if "shard" in settings:
            i, n = parse_shard(str(settings["shard"]))
            cases = shard(cases, i, n)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    timeout = _number(settings, "timeout", float, default=600.0, minimum=1e-3)
    threads = _number(settings, "threads", int, minimum=1, maximum=MAX_THREADS)
    repeat = _number(settings, "repeat", int, default=1, minimum=1, maximum=MAX_REPEAT)
    retry_untrusted = _number(settings, "retry_untrusted", int, default=0, minimum=0, maximum=MAX_REPEAT)
    isolate = settings.get("isolate", "worker")
    if isolate not in ISOLATION:
        raise BadInput(f"bad --isolate {isolate!r}; valid: {', '.join(ISOLATION)}")
    run_id = new_run_id()
    out = settings.get("out") or _default_out(run_id)
    try:
        lock = ResultsLock(out)  # one run owns a results file: taken before it is read for --resume
    except ResultsLocked as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"cannot write --out {out!r}: {exc.strerror or exc}") from None
    with lock:
        return _measure_into(out, settings, cases, run_id, timeout, threads, repeat, retry_untrusted, isolate)


def _check_same_settings(out: str, previous: list[dict], cases, threads: int | None) -> None:
    """Resuming must not mix records measured under other settings: a different seed or thread count
    changes the weights, the inputs or the time, so the file would hold two experiments as one."""
    import torch

    if not cases:
        return
    wanted = {"seed": cases[0].seed, "threads": threads or torch.get_num_threads()}
    for key, value in wanted.items():
        found = sorted({r.get(key) for r in previous if r.get("status") == "ok" and r.get(key) is not None})
        if found and found != [value]:
            raise BadInput(f"cannot --resume {out!r} with --{key} {value}: its records were measured with "
                           f"{key} {', '.join(map(str, found))}; resume with the same settings or choose another --out")


def _measure_into(out, settings, cases, run_id, timeout, threads, repeat, retry_untrusted, isolate) -> int:
    """The sweep into ``out`` (its lock held): resume filtering, the sweep, the summary, the report."""
    from .record import DONE_STATUSES, case_key
    from .results import JsonlWriter, ResultsFileError, chosen_per_case, load, read_jsonl
    from .sweep import run_sweep, untrusted

    skipped, done, untrusted_done = 0, set(), set()
    if settings.get("resume"):
        if not settings.get("out"):
            raise BadInput("--resume needs --out FILE (the results file to resume)")
        if os.path.exists(out):
            try:
                previous, warnings = read_jsonl(out)
            except ResultsFileError as exc:
                raise BadInput(f"cannot --resume: {exc}") from None
            for w in warnings:
                print(f"gradbench: warning: {w}", file=sys.stderr)
            _check_same_settings(out, previous, cases, threads)
            done = {(case_key(r), r.get("repeat") or 1) for r in previous if r.get("status") in DONE_STATUSES}
            untrusted_done = {(case_key(r), r.get("repeat") or 1) for r in chosen_per_case(previous)
                              if untrusted(r)}
            skipped = sum((case_key(c.identity()), k) in done for c in cases for k in range(1, repeat + 1))
    elif os.path.exists(out) and os.path.getsize(out) > 0:
        raise BadInput(f"--out {out!r} already has results; pass --resume to continue it, or choose another file")
    try:
        writer = JsonlWriter(out)
    except OSError as exc:
        raise BadInput(f"cannot write --out {out!r}: {exc.strerror or exc}") from None
    times = f" ({len(cases)} x {repeat} worker processes)" if repeat > 1 else ""
    print(f"gradbench: {len(cases) * repeat - skipped} cases{times} to run ({skipped} already done) -> {out}",
          file=sys.stderr)
    started = time.perf_counter()
    records: list[dict] = []

    def write(record):
        writer.write(record)
        records.append(record)

    try:
        with writer:
            progress = run_sweep(cases, write, run_id=run_id, timeout_s=timeout, isolate=isolate, threads=threads,
                                 on_record=ProgressPrinter(), repeat=repeat, retry_untrusted=retry_untrusted,
                                 done=done, untrusted_done=untrusted_done)
    except KeyboardInterrupt:
        print(f"\ngradbench: interrupted; {len(records)} records are in {out}; "
              f"continue with: gradbench run ... --out {out} --resume", file=sys.stderr)
        return 130
    wall = time.perf_counter() - started
    try:
        everything = load([out], warn=lambda m: None)  # this run and any it resumed
    except ResultsFileError:  # nothing recorded at all (an empty shard, say): no tables, no report
        everything = None
    _print_summary(out, everything, records, progress, wall, retry_untrusted)
    if everything is not None and not settings.get("no_report"):
        from .report.document import write_report

        report_dir = report_dir_for(out)
        paths = write_report(everything, report_dir, title=f"gradbench report: {out}")
        print(f"report: {paths['html']} (and report.md, figures/)")
        print(f"        report written {time.perf_counter() - started - wall:.1f} s after the sweep")
    return 0


def report_dir_for(results_path: str) -> str:
    """results/runs/X.jsonl -> results/runs/X-report/"""
    base = results_path[: -len(".jsonl")] if results_path.endswith(".jsonl") else results_path
    return base + "-report"


def _print_summary(out: str, everything, records: list[dict], progress, wall: float, retries: int = 0) -> None:
    """Ratio tables over the whole file; failures and overhead of this run's records."""
    from .report.tables import render, summary_tables

    for title, table in (summary_tables(everything) if everything is not None else {}).items():
        print(f"\nforward: {title}")
        print(render(table))
    failed = [r for r in records if r["status"] not in ("ok", "not_applicable")]
    if failed:
        print(f"\n{len(failed)} cases did not complete (they are results too):")
        for r in failed[:10]:
            print(f"  {case_text(r)}: {r['status']}: {(r['error'] or '').splitlines()[0][:120]}")
        if len(failed) > 10:
            print(f"  ... and {len(failed) - 10} more in {out}")
    _print_untrusted(records, retries)
    measured = sum(r.get("measure_wall_s") or 0 for r in records)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(progress.statuses.items()))
    print(f"\n{progress.done} cases ({statuses or 'none'}) in {wall:.1f} s; "
          f"{measured:.1f} s inside measurement ({(1 - measured / wall) * 100 if wall else 0:.0f}% harness overhead)")
    print(f"results: {out}")


def _print_untrusted(records: list[dict], retries: int) -> None:
    """The cases whose best attempt is still untrusted, with the reason; what retries recovered."""
    from .results import chosen_per_case

    standing = [r for r in chosen_per_case(records) if r["status"] == "ok"]
    recovered = sum(1 for r in standing if (r.get("attempt") or 1) > 1 and r.get("time_trusted"))
    bad = [r for r in standing if r.get("time_trusted") is False]
    if recovered:
        print(f"\n{recovered} untrusted timings were trusted when measured again (--retry-untrusted)")
    if not bad:
        return
    print(f"\n{len(bad)} of {len(standing)} ok timings are untrusted (kept, and marked in the report):")
    several = any((r.get("repeat") or 1) > 1 for r in standing)
    for r in bad[:10]:
        where = f" (process {r['repeat']})" if several else ""
        print(f"  {case_text(r)}{where}: {r['time_distrust']}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more")
    advice = "measure them again with --retry-untrusted N; " if not retries else \
        f"they stayed untrusted through {retries} retries; "
    print(f"  {advice}gradbench selfcheck says whether the machine is quiet")


# ---------------------------------------------------------------- explain, list, env, case


def cmd_explain(args) -> int:
    from .case import Case
    from .modes import MODES
    from .pipeline import measure_case
    from .report.tables import UNTRUSTED_LEGEND, behaviour_table, render
    from .workload import Workload

    models = _list_arg(args.models)
    if models == []:
        raise BadInput("--models is empty; name built-in models (mlp cnn transformer) or MODULE:FUNCTION")
    models = models or ["mlp", "transformer"]
    try:
        cases_by_model = {}
        for model in models:
            cases_by_model[model] = [
                Case(model, args.size, args.batch_size, args.device, args.dtype, mode, "forward",
                     max_time_s=args.max_time, cudnn_benchmark=args.cudnn_benchmark).validate()
                for mode in MODES
            ]
        _check_user_models(models)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    output = {}
    for model, cases in cases_by_model.items():
        print(f"gradbench: measuring {len(cases)} modes of {model}/{args.size} ...", file=sys.stderr)
        try:
            workload = Workload(*cases[0].workload_key)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        output[model] = [measure_case(c, workload) for c in cases]
    if args.format == "json":
        print(json.dumps(finite_or_none(output), indent=1, allow_nan=False))
        return 0
    for model, records in output.items():
        r = records[0]
        title = f"{model}/{args.size}, batch {args.batch_size}, {args.device} {args.dtype} " \
                f"({r['params']:,} parameters; torch {r['torch']}, {r['threads']} threads)"
        print(f"\n## {title}\n" if args.format == "markdown" else f"\n{title}")
        print(render(behaviour_table(records), args.format))
        failed = [f"{x['mode']}: {x['error']}" for x in records if x["status"] not in ("ok", "not_applicable")]
        doubted = [f"{x['mode']}: timing untrusted: {x['time_distrust']}" for x in records
                   if x["status"] == "ok" and x.get("time_trusted") is False]
        warned = dict.fromkeys(x["global_state_warning"] for x in records if x["global_state_warning"])
        for line in [*failed, *doubted, *warned]:
            print(f"  ! {line}")
        if doubted:
            print(f"  {UNTRUSTED_LEGEND}")
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

    df = _load_inputs(args.results)
    out = args.out or (report_dir_for(args.results[0]) if len(args.results) == 1 and
                       args.results[0].endswith(".jsonl") else os.path.join("results", "report"))
    try:
        paths = write_report(df, out, title=args.title or "gradbench report: " + ", ".join(args.results))
    except OSError as exc:
        raise BadInput(f"cannot write report to {out!r}: {exc.strerror or exc}") from None
    print(f"report: {paths['html']}\n        {paths['markdown']}\n        {len(paths['figures'])} figure files "
          f"in {os.path.join(out, 'figures')}")
    return 0


def cmd_compare(args) -> int:
    from .report.compare import BETWEEN, compare, draw, interval_kind, regressions, text_table
    from .report.tables import render

    if args.fail_above is not None and not (math.isfinite(args.fail_above) and args.fail_above >= 0):
        raise BadInput(f"bad --fail-above {args.fail_above:g}; expected a finite percentage >= 0, e.g. 5")
    df = _load_inputs(args.results)
    try:
        table, sides, only = compare(df, args.by)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    print(f"compared by {args.by}: baseline {sides[0]!r} vs {', '.join(repr(s) for s in sides[1:])}; "
          f"{len(table)} shared cases (time ratio = other / baseline; {interval_kind(table)})")
    print(render(text_table(table)))
    if only:
        print(f"\n{len(only)} cases are not on both sides:")
        for line in only:
            print(f"  {line}")
    if args.out:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise BadInput(f"--out {args.out!r} is a file; compare --out takes a folder for the table and figure")
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"cannot write --out {args.out!r}: {exc.strerror or exc}") from None
        table.to_csv(os.path.join(args.out, f"compare_by_{args.by}.csv"), index=False)
        for path in draw(df, args.by, args.out):
            print(f"figure: {path}")
    if not table.empty and not table["trusted"].all():
        print(f"\n{int((~table['trusted']).sum())} cases have only untrusted timings on a side (marked NO); "
              "--fail-above does not fail on them")
    if args.fail_above is not None:
        if not table.empty and (table["interval"] != BETWEEN).any():
            print("\nnote: with one run a side the intervals miss the variation between processes, so this gate "
                  "also fails on noise; measure each side with --repeat K (README: Comparing)")
        bad, doubtful = regressions(table, args.fail_above)
        if not doubtful.empty:
            print(f"\nnot judged: {len(doubtful)} untrusted cases look slower by more than {args.fail_above:g}%:")
            for (_, row), case in zip(doubtful.iterrows(), text_table(doubtful).index):
                print(f"  {case} {row['mode']}: {row['distrust']}")
        if not bad.empty:
            print(f"\nFAIL: {len(bad)} cases slower by more than {args.fail_above:g}% with the whole interval beyond:")
            print(render(text_table(bad)))
            return 1
        print(f"\nOK: no trusted case slower by more than {args.fail_above:g}% with its whole interval beyond")
    return 0


def cmd_asv_machine(args) -> int:
    """Write this machine into asv's machine file, named by its GPU, with the GPU fields asv lacks."""
    from .env import asv_machine_entry, default_asv_machine_name

    path = os.path.expanduser(args.file)
    name = args.machine or default_asv_machine_name()
    data = {"version": 1}
    if os.path.exists(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read asv machine file {path!r}: {exc}") from None
    data[name] = {**data.get(name, {}), **asv_machine_entry(name)}
    try:
        with open(path, "w") as f:
            json.dump(data, f, indent=4)
    except OSError as exc:
        raise BadInput(f"cannot write asv machine file {path!r}: {exc.strerror}") from None
    print(f"asv machine {name!r} written to {path}; run: asv run --machine {name}")
    return 0


def cmd_case(args) -> int:
    from .pipeline import run_case

    try:
        record = run_case(model=args.model, size=args.size, batch_size=args.batch_size, device=args.device,
                          dtype=args.dtype, mode=args.mode, step=args.step, max_time_s=args.max_time,
                          cudnn_benchmark=args.cudnn_benchmark)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(finite_or_none(record), indent=1, allow_nan=False))
    return 0


def cmd_selfcheck(args) -> int:
    from .selfcheck import run_selfcheck

    if args.grid == "quick":
        from .selfcheck import grid_agreement
        from .sweep import QUICK, Grid

        return grid_agreement(Grid(**QUICK), args.tolerance)
    return run_selfcheck(tolerance=args.tolerance)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradbench", description="Measure what eval(), no_grad(), requires_grad=False and "
                     "inference_mode really cost and save.")
    parser.add_argument("--version", action="version", version=f"gradbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)

    explain = sub.add_parser("explain", help="the measured behaviour of every mode on your model and machine")
    explain.add_argument("--models", nargs="+", help="default: mlp transformer")
    explain.add_argument("--size", default="small")
    explain.add_argument("--batch-size", type=int, default=32)
    explain.add_argument("--device", default="cpu")
    explain.add_argument("--dtype", default="float32")
    explain.add_argument("--max-time", type=float, default=0.3, help="seconds of timing per mode (default 0.3)")
    explain.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    explain.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark on (CUDA)")

    sub.add_parser("list", help="models with sizes and parameter counts; modes with their definitions")
    env = sub.add_parser("env", help="the machine fingerprint stored with every record")
    env.add_argument("--json", action="store_true")

    selfcheck = sub.add_parser("selfcheck", help="is this machine quiet enough to benchmark?")
    selfcheck.add_argument("--tolerance", type=float, default=0.05,
                           help="warn where gradbench and torch.utils.benchmark differ by more (default 0.05)")
    selfcheck.add_argument("--grid", choices=("quick",), help="instead, compare on every case of the --quick sweep")

    report = sub.add_parser("report", help="figures, report.md and a self-contained report.html from results")
    report.add_argument("results", nargs="+", help="gradbench JSONL files, asv result folders, pytest-benchmark JSON")
    report.add_argument("--out", help="the report folder (default: beside a single JSONL file, else results/report)")
    report.add_argument("--title")

    compare = sub.add_parser("compare", help="the same cases side by side across machines, GPUs, versions")
    compare.add_argument("results", nargs="+", help="gradbench JSONL files, asv result folders, pytest-benchmark JSON")
    compare.add_argument("--by", choices=("machine", "gpu", "torch", "commit", "device", "run", "file"),
                         required=True, help="what differs between the sides (run: run_id; file: input file)")
    compare.add_argument("--fail-above", type=float, metavar="PCT",
                         help="exit 1 when a case is slower by more than PCT percent, its whole CI beyond; "
                              "cases with untrusted timings are listed, never failed on")
    compare.add_argument("--out", help="also write the table (CSV) and a figure into this folder")

    machine = sub.add_parser("asv-machine", help="name this machine for asv by its GPU, recording GPU, "
                             "driver, CUDA and torch in asv's machine file")
    machine.add_argument("--machine", help="the name (default: HOST-GPU, or HOST-cpu)")
    machine.add_argument("--file", default="~/.asv-machine.json", help="asv's machine file (default: %(default)s)")

    case = sub.add_parser("case", help="measure one case and print its record as JSON")
    case.add_argument("--model", default="mlp")
    case.add_argument("--size", default="small")
    case.add_argument("--batch-size", type=int, default=32)
    case.add_argument("--device", default="cpu")
    case.add_argument("--dtype", default="float32")
    case.add_argument("--mode", default="eval_no_grad")
    case.add_argument("--step", default="forward")
    case.add_argument("--max-time", type=float, default=2.0, help="seconds of timing (default 2)")
    case.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark on (CUDA)")
    return parser


COMMANDS = {"run": cmd_run, "explain": cmd_explain, "list": cmd_list, "env": cmd_env, "case": cmd_case,
            "selfcheck": cmd_selfcheck, "asv-machine": cmd_asv_machine, "report": cmd_report,
            "compare": cmd_compare}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BadInput as exc:
        print(f"gradbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
