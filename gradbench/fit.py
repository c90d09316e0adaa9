"""Only what fits runs: before a case's workload is built, a built-in family's case whose memory cannot fit
on its device (or in --memory-budget) is refused, as not_applicable with the figures, instead of a worker
the kernel's OOM killer ends (on the CPU) or a build that runs out of memory halfway.

What a case needs is a LOWER BOUND, from a meta-device build (catalog.py): its parameters and buffers in
the case's dtype, the gradients of the parameters a train step trains, and the input batch. Activations,
the step's workspace and the allocator's rounding are left out on purpose, so that a refusal is never
wrong: a case above the bound may still run out of memory, and is then an oom (or crashed) record as
before. A user model is never weighed here: its factory is the user's code, and it runs once, in the build.

What the device can hold is read through READERS, which tests replace with fakes: on the CPU,
/proc/meminfo's MemAvailable, lowered to the cgroup's limit minus its usage where that is less (v2
memory.max minus memory.current, v1 memory.limit_in_bytes minus memory.usage_in_bytes, every ancestor
too); on CUDA, the driver's free memory plus what this process's caching allocator reserves (it is this
process's to reuse).
"""
from __future__ import annotations


import os
from dataclasses import dataclass, replace
from typing import Callable

from .units import human_bytes

UNLIMITED = 2 ** 62  # a cgroup v1 limit this high (9223372036854771712 by default) is no limit


@dataclass(frozen=True)
class Need:
    """A case's lower bound of memory, in bytes, by part."""

    dtype: str
    weights: int  # parameters, in the case dtype
    buffers: int
    gradients: int
    inputs: int
    build: int = 0  # weights and buffers in float32: what building the model holds on the CPU before the cast

    @property
    def total(self) -> int:
        return self.weights + self.buffers + self.gradients + self.inputs

    def __str__(self) -> str:
        return (f"at least {human_bytes(self.total)} (weights {human_bytes(self.weights)} in {self.dtype}, "
                f"buffers {human_bytes(self.buffers)}, gradients {human_bytes(self.gradients)}, "
                f"input {human_bytes(self.inputs)})")


@dataclass(frozen=True)
class Room:
    """What a device can hold now, and where the figure comes from."""

    bytes: int
    source: str


# ---------------------------------------------------------------- what the device can hold


def read_meminfo(path: str = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes; None where there is no such file or line (not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # v2's "max": no limit


def _ancestors(root: str, path: str) -> list[str]:
    """The cgroup's folder and each parent up to the hierarchy's root. A container whose /proc/self/cgroup
    names a path its /sys/fs/cgroup does not have (no cgroup namespace) sees its own limits at the root."""
    folders, path = [], "/" + path.strip("/")
    while True:
        folder = os.path.join(root, path.lstrip("/"))
        if os.path.isdir(folder):
            folders.append(folder)
        if path == "/":
            return folders
        path = os.path.dirname(path)


def cgroup_room(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> Room | None:
    """The least room left under any memory limit of this process's cgroups (v2 and v1), or None: no limit."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # v2: the unified hierarchy
            files, base, what = ("memory.max", "memory.current"), root, "cgroup memory.max minus memory.current"
        elif "memory" in controllers.split(","):  # v1: the memory controller's own hierarchy
            files, base = ("memory.limit_in_bytes", "memory.usage_in_bytes"), os.path.join(root, "memory")
            what = "cgroup memory.limit_in_bytes minus memory.usage_in_bytes"
        else:
            continue
        for folder in _ancestors(base, path):
            limit, usage = (_read_int(os.path.join(folder, name)) for name in files)
            if limit is not None and usage is not None and limit < UNLIMITED:
                rooms.append(Room(max(limit - usage, 0), what))
    return min(rooms, key=lambda r: r.bytes, default=None)


def cpu_room(meminfo: str = "/proc/meminfo", proc_cgroup: str = "/proc/self/cgroup",
             cgroup_root: str = "/sys/fs/cgroup") -> Room | None:
    """MemAvailable, or the cgroup's room where that is less; None where neither can be read."""
    available = read_meminfo(meminfo)
    rooms = [r for r in (Room(available, "MemAvailable") if available is not None else None,
                         cgroup_room(proc_cgroup, cgroup_root)) if r is not None]
    return min(rooms, key=lambda r: r.bytes, default=None)


def cuda_room(device: str, mem_get_info: Callable | None = None, memory_reserved: Callable | None = None) -> Room:
    """The driver's free memory on the case's GPU plus this process's allocator reserve (held, reusable)."""
    import torch

    from .workload import resolved_device

    if mem_get_info is None:  # the real GPU (tests pass fakes, which take the device as the case names it)
        device, mem_get_info, memory_reserved = resolved_device(device), torch.cuda.mem_get_info, \
            torch.cuda.memory_reserved
    free, _total = mem_get_info(device)
    reserved = memory_reserved(device)
    return Room(free + reserved, f"free {human_bytes(free)} plus {human_bytes(reserved)} this process reserves")


@dataclass
class Readers:
    """Where the device's room is read: ``cpu()`` and ``cuda(device)``, each a Room or None (unknown)."""

    cpu: Callable[[], Room | None] = cpu_room
    cuda: Callable[[str], Room | None] = cuda_room


READERS = Readers()  # tests replace it (or pass their own to refusal)


# ---------------------------------------------------------------- what a case needs


def _trained(meta, case) -> list:
    """The parameters a train step makes gradients for (none for a forward, or a mode with no graph); for
    finetune_head, --head's parameters, or without it the smallest nn.Linear's (the head is one of them,
    observed only once the model is real)."""
    from torch import nn

    from .modes import MODES, named_head

    mode = MODES.get(case.mode)
    if case.step != "train_step" or mode is None or not mode.graph_possible(meta.model):
        return []
    params = [p for p in meta.parameters() if p.is_floating_point()]
    if mode.trainable == "head":
        if case.head is not None:
            try:
                return [p for p in named_head(meta.model, case.head).parameters() if p.is_floating_point()]
            except ValueError:  # a bad --head is the build's to report
                return []
        linears = [list(m.parameters()) for m in meta.model.modules() if isinstance(m, nn.Linear)]
        return min(linears, key=lambda ps: sum(p.numel() for p in ps), default=[])
    if mode.trainable == "as_built":
        return [p for p in params if p.requires_grad]
    return params


def _input_bytes(meta, case) -> int:
    """The input batch's bytes in the case dtype, made on the meta device; 0 where make_input cannot run
    there (a lower bound still)."""
    import torch

    from .catalog import tensor_bytes

    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            raw = meta.built.make_input(case.batch_size)
    except Exception:
        return 0
    tensors = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, (tuple, list)) else (raw,)
    return tensor_bytes([t for t in tensors if isinstance(t, torch.Tensor)], case.dtype)


def need(case) -> Need | None:
    """The case's lower bound (Need), or None for a user model. Raises catalog.Unavailable or ValueError
    where the family cannot be built here."""
    from .catalog import meta_model, tensor_bytes
    from .models import is_user_model

    if is_user_model(case.model):
        return None
    meta = meta_model(case.model, case.size, case.seq_len, case.image_size)
    return Need(case.dtype, tensor_bytes(meta.parameters(), case.dtype), tensor_bytes(meta.buffers(), case.dtype),
                tensor_bytes(_trained(meta, case), case.dtype), _input_bytes(meta, case),
                tensor_bytes([*meta.parameters(), *meta.buffers()], "float32"))


def room(case, own_bytes: int = 0, readers: Readers | None = None) -> tuple[int, str] | None:
    """(bytes, words) the case may use: the device's room (plus ``own_bytes`` on the CPU, what this process
    holds and frees or reuses for the case), or the memory budget where that is less; None: unknown."""
    readers = readers or READERS
    device = case.device
    found = readers.cuda(device) if device.startswith("cuda") else readers.cpu()
    budget = getattr(case, "memory_budget", None)
    options = []
    if found is not None:
        held = own_bytes if not device.startswith("cuda") else 0  # a GPU's reserve counts them already
        source = found.source + (f", plus {human_bytes(held)} this process holds and releases for it" if held else "")
        options.append((found.bytes + held, f"{device} has {human_bytes(found.bytes + held)} available ({source})"))
    if budget is not None:
        options.append((budget, f"the memory budget is {human_bytes(budget)} (--memory-budget)"))
    return min(options, key=lambda o: o[0], default=None)


def refusal(case, own_bytes: int = 0, readers: Readers | None = None) -> str | None:
    """Why ``case`` cannot fit (its lower bound is above what its device can hold now, or above its
    memory budget), or None: it may run. A refusal is never wrong; a None is no promise (the bound leaves
    activations out, so a case above it may still run out of memory: an oom or crashed record as before).
    ``own_bytes``: CPU memory this process holds that building the case frees or reuses (the session's
    workloads). A user model, or a family that cannot be built here, is not refused here: its build says why."""
    try:
        needed = need(case)
    except Exception:  # catalog.Unavailable, a bad size: the real build reports it
        return None
    if needed is None:
        return None
    limit = room(case, own_bytes, readers)
    if limit is not None and needed.total > limit[0]:
        return f"needs {needed} and {limit[1]}; a case that cannot fit is not run"
    return _build_refusal(case, needed, own_bytes, readers)


def _build_refusal(case, needed: Need, own_bytes: int, readers: Readers | None) -> str | None:
    """A family is built on the CPU in float32, then cast and moved: a bfloat16 or CUDA case needs the float32
    weights in the CPU's memory first (llama 8b in bfloat16 fits 24 GiB, its float32 build does not)."""
    if needed.dtype == "float32" and not case.device.startswith("cuda"):
        return None  # the build is the case's own weights, bounded above
    host = replace(case, device="cpu",
                               memory_budget=None if case.device.startswith("cuda") else case.memory_budget)
    limit = room(host, own_bytes, readers)
    if limit is None or needed.build <= limit[0]:
        return None
    to = " and ".join(w for w in (f"cast to {needed.dtype}" if needed.dtype != "float32" else "",
                                  f"moved to {case.device}" if case.device.startswith("cuda") else "") if w)
    return (f"building the model needs at least {human_bytes(needed.build)} on the cpu (its weights and buffers in "
            f"float32, before they are {to}) and {limit[1]}; a case that cannot fit is not run")
