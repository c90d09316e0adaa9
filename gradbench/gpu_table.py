"""The GPUs `gradbench predict --gpu` knows: each one's memory as its vendor states it. What a program can
allocate is less: the CUDA (or ROCm) context takes some hundreds of MiB before the first tensor, and the
driver reserves some more (torch.cuda.get_device_properties().total_memory reports, for instance, about
79 GiB of an H100's 80 GB); a prediction is set against the stated figure and prints the margin, so judge
a margin under 1 GiB as "does not fit". ``--memory-budget`` gives an exact figure instead."""
from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30
GB = 10 ** 9


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int
    stated: str  # as the vendor states it


GPUS = {g.name: g for g in (
    Gpu("T4", 16 * GiB, "16 GB GDDR6"),
    Gpu("L4", 24 * GiB, "24 GB GDDR6"),
    Gpu("A10", 24 * GiB, "24 GB GDDR6"),
    Gpu("RTX3090", 24 * GiB, "24 GB GDDR6X"),
    Gpu("RTX4090", 24 * GiB, "24 GB GDDR6X"),
    Gpu("A100-40GB", 40 * GiB, "40 GB HBM2"),
    Gpu("A100-80GB", 80 * GiB, "80 GB HBM2e"),
    Gpu("H100-80GB", 80 * GiB, "80 GB HBM3"),
    Gpu("H200", 141 * GB, "141 GB HBM3e"),
    Gpu("B200", 192 * GB, "192 GB HBM3e (180 GB usable on some systems)"),
    Gpu("MI300X", 192 * GiB, "192 GB HBM3"),
)}


def gpu(name: str) -> Gpu:
    """The GPU of that name, case and punctuation aside ('h100-80gb', 'RTX 4090'); ValueError naming the valid ones."""
    key = _squashed(name)
    for known in GPUS.values():
        if _squashed(known.name) == key:
            return known
    raise ValueError(f"unknown GPU {name!r}; valid GPUs: {', '.join(GPUS)} (or --memory-budget SIZE)")


def _squashed(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())
