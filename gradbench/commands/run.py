"""`gradbench run`: sweep the grid and write records to JSONL (runner.py runs it; settings.py checks it), then
print the summary and write the report."""
from __future__ import annotations

from .arguments import INTEGER


def add_parser(sub):
    p = sub.add_parser("run", help="sweep the grid and write records to JSONL",
                       description="Sweep models x sizes x batch sizes x devices x dtypes x modes x steps.")
    _add_grid(p)
    _add_sweep(p)
    _add_slurm(p)
    return p


def _add_grid(p) -> None:
    """What is measured: the grid's axes and how each case runs."""
    p.add_argument("--suite", metavar="NAME", help="a grid shipped with gradbench: reference (every reference family "
                   "at published sizes, for an 80 GB GPU) or reference-cpu (their small sizes, ~10 min on a 2-core "
                   "CPU); --models and --sizes narrow it, --batch-sizes, --seq-len, --image-size, --dtypes and "
                   "--steps replace its own (docs: Model families)")
    p.add_argument("--models", nargs="+", help="built-in names or MODULE:FUNCTION / file.py:FUNCTION "
                   "(default: mlp cnn transformer)")
    p.add_argument("--sizes", nargs="+", help="each model runs at those it offers: mlp cnn transformer tiny small "
                   "medium large; the zoo's as `gradbench list` names them (default: the toys and user models tiny "
                   "small, a zoo family its first)")
    p.add_argument("--batch-sizes", nargs="+", help="default: 1 8 64")
    p.add_argument("--seq-len", nargs="+", metavar="N", help="sequence lengths, a sweep axis for the models that "
                   "take one: text families, and user models (make_input(batch_size, seq_len=N)) (default: each "
                   "family's own, e.g. bert 128; none for a user model)")
    p.add_argument("--image-size", nargs="+", metavar="N", help="image height and width, a sweep axis for the image "
                   "families (resnet, vit) (default: each family's own, 224)")
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
    p.add_argument("--memory-budget", metavar="SIZE", help="512MiB, 8GiB, 24GB or bytes: a built-in model's case "
                   "whose weights, gradients and input alone exceed it, or exceed what its device has free, is "
                   "not_applicable instead of run (default: what the device has); a lower bound, not a limit "
                   "enforced while a case runs")
    p.add_argument("--threads", type=INTEGER, help="torch threads per worker (default: torch's choice)")


def _add_sweep(p) -> None:
    """How the sweep runs: its file, shards, isolation, timing, repeats and GPUs."""
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


def _add_slurm(p) -> None:
    """Where workers run: local, or a Slurm job array and its resources."""
    slurm = p.add_argument_group("Slurm", "--launcher slurm: the sweep as one job array, submitted through "
                                 "submitit, merged into --out (docs: Clusters)")
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


def run(args) -> int:
    from ..runner import execute
    from ..settings import run_settings

    return execute(run_settings(args), finish=summarise)


def summarise(finished) -> None:
    """The run's end: the summary over the whole results file (this run and any it resumed), then the report."""
    import time

    from ..reading import ResultsFileError
    from ..report.summary import print_summary
    from ..results import load
    from ..runner import report_dir_for

    settings, out = finished.settings, finished.out
    try:
        everything = load([out], warn=lambda m: None)
    except ResultsFileError:  # nothing recorded at all (an empty shard, say): no tables, no report
        everything = None
    print_summary(out, everything, finished.records, finished.progress, finished.wall_s, settings.retry_untrusted,
                  concurrent=settings.launcher == "slurm" or bool(settings.gpus))
    if everything is not None and not settings.no_report:
        from ..report.document import write_report

        paths = write_report(everything, report_dir_for(out), title=f"gradbench report: {out}")
        print(f"report: {paths['html']} (and report.md, figures/)")
        print(f"        report written {time.perf_counter() - finished.started - finished.wall_s:.1f} s after the sweep")
