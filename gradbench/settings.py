"""`gradbench run`'s settings, from the command line and a TOML file, as one typed, validated value.

Strict on purpose: a boolean only from a boolean (``resume = "no"`` is not false), an integer only from
an integer (``threads = 1.9`` is not 1), numbers finite and within what torch accepts. Every refusal
is BadInput: one line naming the key, the value and what is valid.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

from .errors import BadInput, option
from .inputs import NotRegularFile, read_regular

LIST_OPTIONS = ("models", "sizes", "batch_sizes", "devices", "dtypes", "modes", "steps", "compile", "autocast",
                "seq_len", "image_size")
INTEGER_LISTS = ("batch_sizes", "seq_len", "image_size")
BOOL_OPTIONS = ("quick", "resume", "cudnn_benchmark", "no_report", "compile_cold", "energy_sampling")
STRING_OPTIONS = ("out", "shard", "isolate", "launcher", "gpus", "slurm_partition", "slurm_constraint", "head",
                  "suite")
PAIR_OPTIONS = ("slurm_options",)  # KEY=VALUE, given again for each (a value may hold commas)
SIZE_OPTIONS = ("memory_budget",)  # bytes: "8GiB", "24GB" or a number of bytes (capacity.parse_size)
LAUNCHERS = ("local", "slurm")
# torch.manual_seed takes -2**63 .. 2**64 - 1; the record's seed is an int64 (as any JSON reader with
# 64-bit integers, and a DataFrame, hold it), and the input batch is drawn under seed + 1
SEED_RANGE = (-(2 ** 63), 2 ** 63 - 2)
MAX_THREADS = 4096
MAX_REPEAT = 100  # --repeat and --retry-untrusted: more is a typo, not a plan
DEFAULT_TIMEOUT_S = 600.0
MAX_ARRAY = 10000  # Slurm's default MaxArraySize is 1001; clusters raise it
# key: (kind, minimum, maximum); times are > 0 (checked with the grid and Case)
NUMBER_RULES = {
    "threads": (int, 1, MAX_THREADS), "seed": (int, *SEED_RANGE), "repeat": (int, 1, MAX_REPEAT),
    "retry_untrusted": (int, 0, MAX_REPEAT), "timeout": (float, 1e-3, None), "max_time": (float, None, None),
    # Slurm: array tasks, GPUs and CPUs per task, time limit in minutes (a year at most), array parallelism
    "jobs": (int, 1, MAX_ARRAY), "slurm_gpus_per_task": (int, 0, 1024), "slurm_cpus_per_task": (int, 1, MAX_THREADS),
    "slurm_time": (int, 1, 525600), "slurm_parallel": (int, 1, MAX_ARRAY),
}
SLURM_OPTIONS = ("jobs", "slurm_partition", "slurm_constraint", "slurm_gpus_per_task", "slurm_cpus_per_task",
                 "slurm_time", "slurm_parallel", "slurm_options")
RUN_OPTIONS = (*LIST_OPTIONS, *BOOL_OPTIONS, *STRING_OPTIONS, *PAIR_OPTIONS, *SIZE_OPTIONS, *NUMBER_RULES)


def list_arg(values) -> list[str] | None:
    """Accept `--x a,b`, `--x a b` and mixes; a value given twice counts once."""
    if values is None:
        return None
    return list(dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip()))


def load_config(path: str) -> dict:
    """A TOML file's settings (top level or a [run] table), each checked for its type."""
    data = _settings_table(_read_toml(path), path)
    if isinstance(data.get("gpus"), int) and not isinstance(data["gpus"], bool):
        data["gpus"] = str(data["gpus"])
    if isinstance(data.get("gpus"), list) and all(isinstance(v, int) and not isinstance(v, bool) for v in data["gpus"]):
        data["gpus"] = ",".join(map(str, data["gpus"]))  # gpus = [0, 1]
    for key, value in data.items():
        data[key] = _config_value(key, value, path)
    return data


def _read_toml(path: str) -> dict:
    """The file as TOML; one that cannot be read or parsed is refused in one line."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(read_regular(path).decode("utf-8"))
    except NotRegularFile as exc:
        raise BadInput(f"--config {exc}; name a TOML file") from None
    except OSError as exc:
        raise BadInput(f"cannot read --config {path!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"malformed --config {path!r}: {exc}") from None


def _settings_table(data: dict, path: str) -> dict:
    """The file's settings by option name (slurm-time and slurm_time are one key), all of them known."""
    table = data.get("run", data)
    if not isinstance(table, dict):
        raise BadInput(f"bad [run] in --config {path!r}: expected a table of settings, got {table!r}")
    if table is not data and len(data) > 1:
        outside = sorted(k for k in data if k != "run")[0]
        raise BadInput(f"key {outside!r} in --config {path!r} is outside its [run] table; move it into [run]")
    named, given_as = {}, {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in named:
            raise BadInput(f"--config {path!r} gives {name!r} twice (as {given_as[name]!r} and {key!r}); "
                           "give it once")
        named[name], given_as[name] = value, key
    unknown = sorted(set(named) - set(RUN_OPTIONS))
    if unknown:
        raise BadInput(f"unknown key {unknown[0]!r} in --config {path!r}; valid keys: {', '.join(RUN_OPTIONS)}")
    return named


def _config_value(key: str, value, path: str):
    """``value`` checked for ``key``'s type, as the command line would give it (lists as names, slurm_options
    as KEY=VALUE strings)."""
    if key in BOOL_OPTIONS and not isinstance(value, bool):
        raise BadInput(f"bad {key!r} in --config {path!r}: {value!r}; expected true or false")
    if key == "gpus" and not isinstance(value, str):
        raise BadInput(f"bad 'gpus' in --config {path!r}: {value!r}; expected \"all\", a GPU index or a list "
                       "of them")
    if key in STRING_OPTIONS and not isinstance(value, str):
        raise BadInput(f"bad {key!r} in --config {path!r}: {value!r}; expected a string")
    if key in SIZE_OPTIONS and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise BadInput(f"bad {key!r} in --config {path!r}: {value!r}; expected a size such as \"8GiB\" or bytes")
    if key in PAIR_OPTIONS:
        return _config_pairs(key, value, path)
    if key in LIST_OPTIONS:
        return _config_list(key, value, path)
    if key in NUMBER_RULES:
        try:
            checked_number(option(key), value, *NUMBER_RULES[key])
        except BadInput as exc:
            raise BadInput(f"{exc} (in --config {path!r})") from None
    return value


def _config_pairs(key: str, value, path: str) -> list[str]:
    """slurm_options as a [run.slurm_options] table or a list of "KEY=VALUE" strings -> the strings."""
    if isinstance(value, dict):  # a [run.slurm_options] table
        odd = next((k for k, v in value.items() if not isinstance(v, (str, int, bool))), None)
        if odd is not None:
            raise BadInput(f"bad slurm_options.{odd} in --config {path!r}: {value[odd]!r}; expected a string, "
                           "an integer, true or false")
        value = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"bad {key!r} in --config {path!r}: {value!r}; expected a table, or a list of "
                       "\"KEY=VALUE\" strings")
    return value


def _config_list(key: str, value, path: str) -> list[str]:
    """A list of its own type, as docs/running.md says (no string for a list), as the command line gives it."""
    integers = key in INTEGER_LISTS
    example = "[8, 64]" if integers else '["mlp", "cnn"]'
    if not isinstance(value, list):
        raise BadInput(f"bad value for {key!r} in --config {path!r}: {value!r}; expected a list, such as "
                       f"{key} = {example}")
    kind_ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if integers else \
        (lambda v: isinstance(v, str))
    if not all(kind_ok(v) for v in value):
        raise BadInput(f"bad value for {key!r} in --config {path!r}: {value!r}; expected a list of "
                       f"{'integers' if integers else 'names'}, such as {key} = {example}")
    return list_arg([str(v) for v in value])  # "mlp,cnn" as on the command line


def merged(args: argparse.Namespace) -> dict:
    """The TOML file's settings, then the command line's over them (the command line wins)."""
    config = getattr(args, "config", None)
    if config == "":
        raise BadInput("--config is empty; name a TOML file")
    settings = load_config(config) if config else {}
    for key in RUN_OPTIONS:
        value = getattr(args, key, None)
        if key in LIST_OPTIONS:
            value = list_arg(value)
        if key in PAIR_OPTIONS and value is not None:  # the command line's pairs add to the file's
            value = [*settings.get(key, []), *value]
        if value is not None:
            settings[key] = value
    return settings


def number(settings: dict, key: str, default=None):
    """A numeric setting by its NUMBER_RULES, or BadInput naming it. Strict: a config's true, "3" or
    2.5 is not an integer, and NaN or infinity is no number of seconds."""
    value = settings.get(key, default)
    if value is None:
        return None
    return checked_number(option(key), value, *NUMBER_RULES[key])


def checked_number(name: str, value, kind, minimum=None, maximum=None):
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadInput(f"bad {name} {value!r}; expected {what}")
    if not math.isfinite(value):
        raise BadInput(f"bad {name} {value!r}; expected a finite number")
    result = kind(value)
    if minimum is not None and not result >= minimum:
        raise BadInput(f"bad {name} {value!r}; it must be >= {minimum:{'d' if kind is int else 'g'}}")
    if maximum is not None and not result <= maximum:
        raise BadInput(f"bad {name} {value!r}; it must be <= {maximum:{'d' if kind is int else 'g'}}")
    return result


def argument(kind, minimum=None, maximum=None, above=None):
    """An argparse type for a finite number in range (checked_number's rules and words): `--max-time nan`
    is refused like `--max-time x`."""
    def parse(text: str):
        try:
            value = decimal_int(text) if kind is int else kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        try:
            checked_number("value", value, kind, minimum, maximum)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"bad value {value!r}; it must be > {above:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_DECIMAL = re.compile(r"[+-]?[0-9]+")  # int() also takes '1_000' and other scripts' digits ('٣'): not here


def decimal_int(text: str) -> int:
    """An integer written as ASCII decimal digits; ValueError otherwise."""
    if not _DECIMAL.fullmatch(str(text).strip()):
        raise ValueError(f"{text!r} is not an integer")
    return int(text)


def _batch_sizes(values: list[str]) -> tuple[int, ...]:
    out = []
    for v in values:
        try:
            out.append(decimal_int(v))
        except ValueError:
            raise BadInput(f"bad batch size {v!r}; batch sizes are integers from 1 to 2^63 - 1") from None
    return tuple(dict.fromkeys(out))


def _input_axis(name: str, values: list[str]) -> tuple[int, ...]:
    """--seq-len or --image-size: integers from 1 to 2^31, each once."""
    from .case import validate_input_axis

    out = []
    for v in values:
        try:
            out.append(decimal_int(v))
            validate_input_axis(option(name), out[-1])
        except ValueError:
            raise BadInput(f"bad {option(name)} {v!r}; it is an integer from 1 to 2^31") from None
    return tuple(dict.fromkeys(out))


def build_grid(settings: dict, here: bool | None = None):
    """The Grid a run's settings describe (defaults filled in), every value validated once. Under
    --launcher slurm the nodes measure, so CUDA need not exist here; nor for a prediction (``here`` False)."""
    from .case import Case
    from .catalog import check_buildable
    from .models import is_user_model, validate_model_name
    from .modes import MODES
    from .plan import QUICK, Grid, default_devices

    here = settings.get("launcher", "local") == "local" if here is None else here
    base = dict(QUICK) if settings.get("quick") else {}
    fields = {}
    for key in ("models", "sizes", "devices", "dtypes", "modes", "steps", "compile", "autocast"):
        if key in settings:
            fields[key] = tuple(settings[key])
    if fields.get("modes") == ("all",):
        fields["modes"] = tuple(MODES)
    if "batch_sizes" in settings:
        fields["batch_sizes"] = _batch_sizes(settings["batch_sizes"])
    for name, axis in (("seq_len", "seq_lens"), ("image_size", "image_sizes")):
        if name in settings:
            if not settings[name]:
                raise BadInput(f"{option(name)} is empty")
            fields[axis] = _input_axis(name, settings[name])
    if "max_time" in settings:
        fields["max_time_s"] = number(settings, "max_time")
    if "seed" in settings:
        fields["seed"] = number(settings, "seed")
    if "cudnn_benchmark" in settings:
        fields["cudnn_benchmark"] = settings["cudnn_benchmark"]  # a bool: store_true, or load_config checked
    for flag in ("compile_cold", "energy_sampling", "head"):
        if flag in settings:
            fields[flag] = settings[flag]
    if "memory_budget" in settings:
        fields["memory_budget"] = memory_budget(settings["memory_budget"])
    grid = Grid(**{**base, "devices": _default_devices(settings, here, default_devices), **fields})
    for name in LIST_OPTIONS:
        if name not in ("seq_len", "image_size") and getattr(grid, name) is not None and not getattr(grid, name):
            raise BadInput(f"{option(name)} is empty")
    try:
        for model in grid.models:
            validate_model_name(model)
        grid.check()
        for model in grid.models:
            for size in grid.sizes_for(model):
                for seq_len, image_size in grid.inputs_for(model):
                    Case(model=model, size=size, seq_len=seq_len, image_size=image_size).validate()
                    if not is_user_model(model):
                        check_buildable(model, size, seq_len, image_size)
        for case in (Case(batch_size=b) for b in grid.batch_sizes):
            case.validate()
        for device in grid.devices:
            for dtype in grid.dtypes:
                Case(device=device, dtype=dtype).validate(here)
            for compile in grid.compile:
                Case(device=device, compile=compile).validate(here)
            for autocast in grid.autocast:
                Case(device=device, autocast=autocast).validate(here)
        for mode in grid.modes:
            Case(mode=mode).validate()
        for step in grid.steps:
            Case(step=step).validate()
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if not grid.max_time_s > 0:
        raise BadInput(f"bad --max-time {grid.max_time_s:g}; it must be > 0 seconds")
    return grid


def memory_budget(value) -> int:
    """--memory-budget (or the config's memory_budget) in bytes, or BadInput naming the forms it takes."""
    from .capacity import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise BadInput(str(exc).replace("bad memory budget", "bad --memory-budget", 1)) from None


def _default_devices(settings: dict, here: bool, available) -> tuple[str, ...]:
    """cpu, plus cuda where it is available; with --gpus, cuda only; on Slurm, cuda where the tasks get GPUs."""
    if settings.get("gpus"):
        return ("cuda",)
    if not here:
        return ("cpu", "cuda") if number(settings, "slurm_gpus_per_task") else ("cpu",)
    return available()


def check_user_models(models) -> None:
    """A user model whose module or file cannot be found is bad input. Its module is not imported
    here: it may exit, hang or crash, which the sweep's workers turn into records."""
    from .models import check_user_model_spec, is_user_model

    for model in models:
        if is_user_model(model):
            try:
                check_user_model_spec(model)
            except ValueError as exc:
                raise BadInput(str(exc)) from None


@dataclass(frozen=True)
class RunSettings:
    """Everything one `gradbench run` needs, validated."""

    grid: object  # plan.Grid
    cases: tuple
    out: str | None  # None: a new file under results/runs
    resume: bool
    timeout_s: float
    threads: int | None
    repeat: int
    retry_untrusted: int
    isolate: str
    no_report: bool
    launcher: str = "local"
    gpus: tuple | None = None  # GPU ids, or ("all",): one pinned worker per GPU (launch/gpus.py)
    slurm: object = None  # launch.slurm.SlurmOptions under --launcher slurm


def run_settings(args: argparse.Namespace) -> RunSettings:
    """`gradbench run`'s arguments (and --config) -> RunSettings, or BadInput naming what is wrong."""
    from .plan import ISOLATION, parse_shard, shard

    settings = merged(args)
    gpus = None
    if settings.get("gpus") is not None:  # its syntax before the devices it implies
        from .launch.gpus import parse_gpus

        gpus = parse_gpus(settings["gpus"])
    grid, cases = grid_cases(settings)
    if "shard" in settings:
        try:
            i, n = parse_shard(settings["shard"])
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        cases = shard(cases, i, n)
    isolate = settings.get("isolate", "worker")
    if isolate not in ISOLATION:
        raise BadInput(f"bad --isolate {isolate!r}; valid: {', '.join(ISOLATION)}")
    if settings.get("out") == "":
        raise BadInput("--out is empty; name a JSONL file, or leave --out out for results/runs/RUN_ID.jsonl")
    if settings.get("resume") and not settings.get("out"):
        raise BadInput("--resume needs --out FILE (the results file to resume)")
    launcher, gpus, slurm = _launch(settings, cases, gpus)
    return RunSettings(
        grid=grid, cases=tuple(cases), out=settings.get("out") or None, resume=bool(settings.get("resume")),
        timeout_s=number(settings, "timeout", default=DEFAULT_TIMEOUT_S), threads=number(settings, "threads"),
        repeat=number(settings, "repeat", default=1), retry_untrusted=number(settings, "retry_untrusted", default=0),
        isolate=isolate, no_report=bool(settings.get("no_report")), launcher=launcher, gpus=gpus, slurm=slurm,
    )


def grid_cases(settings: dict, here: bool | None = None) -> tuple:
    """(the first grid, every case once): the grid the settings describe, or a suite's parts, checked.
    ``here`` False: the devices need not exist on this machine (build_grid)."""
    from .record import case_key

    try:
        grids = [build_grid(part, here) for part in _parts(settings)]
    except BadInput as exc:
        if settings.get("suite") and "devices" not in settings and "no CUDA GPU" in str(exc):
            raise BadInput(f"{exc} (suite {settings['suite']!r} runs on cuda; --devices cpu runs it here)") from None
        raise
    for part in grids:
        check_user_models(part.models)
    return grids[0], list({case_key(case.identity()): case for part in grids for case in part.cases()}.values())


def _parts(settings: dict) -> list[dict]:
    """The run's settings, or under --suite one set per part of the suite (suites.py)."""
    if "suite" not in settings:
        return [settings]
    from .suites import suite_settings

    if settings.get("quick"):
        raise BadInput("--quick and --suite are two grids; give one")
    try:
        return suite_settings(settings["suite"], settings)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _launch(settings: dict, cases, gpus: tuple | None) -> tuple:
    """--launcher, --gpus (parsed) and the Slurm options, checked together: (launcher, gpus, SlurmOptions | None)."""
    from .launch import gpus as gpu_launch

    launcher = settings.get("launcher", "local")
    if launcher not in LAUNCHERS:
        raise BadInput(f"bad --launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    given = [key for key in SLURM_OPTIONS if settings.get(key) is not None]
    if launcher != "slurm" and given:
        raise BadInput(f"{option(given[0])} is a Slurm setting; it needs --launcher slurm")
    if gpus:
        gpu_launch.check_cases(cases, gpus)
    if launcher == "local":
        if gpus:
            import torch

            gpus = gpu_launch.resolve(gpus, torch.cuda.device_count())
        return launcher, gpus, None
    from .launch import slurm

    if "shard" in settings:
        raise BadInput("--shard and --launcher slurm both split the sweep; give --jobs N instead of --shard")
    if gpus and gpus != ("all",):
        raise BadInput("under --launcher slurm, Slurm chooses each task's GPUs: give --gpus all with "
                       "--slurm-gpus-per-task N, not GPU ids")
    options = slurm.options_from(settings, number)
    asked = options.gpus_per_task or any(key in ("gpus_per_node", "gres") for key, _ in options.extra)
    if gpus and not asked:
        raise BadInput("--gpus all under --launcher slurm means the GPUs Slurm gives each task, and none are asked "
                       "for: give --slurm-gpus-per-task N")
    slurm.check_cluster()
    return launcher, gpus, options
