"""The machine fingerprint stored with every record, so numbers can be traced to where they were made."""
from __future__ import annotations

import functools
import os
import platform
import re
import socket
import subprocess
import sys

import torch

from .version import __version__


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _git_commit() -> str | None:
    """GRADBENCH_GIT_COMMIT where it is set (a copy of a checkout sent to another machine, whose .git, if
    it has one, need not be the code's: seen on a GPU machine); else the commit of the checkout this
    code runs from, if it is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    given = os.environ.get("GRADBENCH_GIT_COMMIT", "").strip()
    if given:
        if re.fullmatch(r"[0-9a-fA-F]{7,40}", given):
            return given.lower()
        print(f"gradbench: warning: GRADBENCH_GIT_COMMIT={given[:60]!r} is not a commit (7 to 40 hex digits); "
              "ignored", file=sys.stderr)
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def fingerprint() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "gradbench_version": __version__,
        "git_commit": _git_commit(),
        "machine": platform.node(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "driver": _driver_version() if cuda else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **launch_fields(),
    }


def launch_fields(environ=None) -> dict:
    """Where the measuring process ran: inside a Slurm job (its array's job id and task) or not, and on
    which host, pinned to which one GPU (--gpus, or Slurm, set CUDA_VISIBLE_DEVICES). Read from the
    environment, so `srun gradbench ...` counts as slurm too."""
    environ = os.environ if environ is None else environ
    job = environ.get("SLURM_ARRAY_JOB_ID") or environ.get("SLURM_JOB_ID")
    task = environ.get("SLURM_ARRAY_TASK_ID")
    return {"launcher": "slurm" if job else "local", "slurm_job_id": _integer(job),
            "slurm_array_task_id": _integer(task), "host": socket.gethostname(),
            "gpu_index": _integer(environ.get("CUDA_VISIBLE_DEVICES"))}


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


def _total_ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_asv_machine_name() -> str:
    """HOST-GPU (or HOST-cpu): asv keys results by machine name, so the GPU belongs in it."""
    info = fingerprint()
    gpu = info["gpu"] or "cpu"
    slug = "".join(c if c.isalnum() else "-" for c in gpu.replace("NVIDIA ", "")).strip("-")
    return f"{info['machine']}-{slug}"


def asv_machine_entry(name: str) -> dict:
    """asv's machine fields plus what asv lacks (GPU, driver, CUDA, torch, and the Python version: with
    --python=same asv's own 'python' is the interpreter's path).

    asv keeps extra keys of a machine entry: they land in results/asv/results/NAME/machine.json
    and in every result file's params, where gradbench's report and asv's own site can read them.
    """
    info = fingerprint()
    return {
        "machine": name,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": info["cpu"],
        "num_cpu": str(info["cpu_count"]),
        "ram": str(_total_ram_bytes() or ""),
        "gpu": info["gpu"] or "none",
        "gpu_count": str(info["gpu_count"]),
        "driver": info["driver"] or "none",
        "cuda": info["cuda"] or "none",
        "torch": info["torch"],
        "python_version": info["python"],
    }


def update_asv_machine_file(path: str, name: str) -> None:
    """Add or refresh machine ``name`` in asv's machine file, keeping the others; the file is written
    whole or not at all (atomic.replaced), never with NaN. BadInput if the file is not asv's."""
    import json

    from .atomic import write_text
    from .errors import BadInput
    from .inputs import NotRegularFile, read_regular

    data = {"version": 1}
    if os.path.exists(path):
        try:
            data = json.loads(read_regular(path).decode("utf-8"), parse_constant=lambda constant: None)
        except NotRegularFile as exc:
            raise BadInput(f"asv machine file {exc}; name asv's JSON machine file") from None
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read asv machine file {path!r}: {exc}") from None
    machines = {k: v for k, v in data.items() if k != "version"} if isinstance(data, dict) else None
    if machines is None or not all(isinstance(m, dict) and all(isinstance(v, str) or v is None for v in m.values())
                                   for m in machines.values()):
        raise BadInput(f"{path!r} is not an asv machine file: expected a JSON object of machines, each an "
                       "object of text fields")
    data[name] = {**data.get(name, {}), **asv_machine_entry(name)}
    write_text(path, json.dumps(data, indent=4, allow_nan=False), "asv machine file")
