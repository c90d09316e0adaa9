"""The GPUs `gradbench predict --gpu` knows: each one's memory as torch reports it
(``torch.cuda.get_device_properties(i).total_memory``), rounded down to 0.1 GiB, from public reports of
that call on each card: what a program may allocate into, less the CUDA (or ROCm) context, which takes
some hundreds of MiB before the first tensor (and which max_memory_allocated does not count either). The
vendor's own figure is beside it. Not confirmed on every card here: ``--memory-budget`` gives an exact
figure instead, and `gradbench env` on the card prints its own."""
from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30
GB = 10 ** 9


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int  # as torch reports it (total_memory), rounded down to 0.1 GiB
    stated: str  # as the vendor states it


def _gib(tenths: int) -> int:
    return tenths * GiB // 10


GPUS = {g.name: g for g in (
    Gpu("T4", _gib(147), "16 GB GDDR6"),
    Gpu("L4", _gib(219), "24 GB GDDR6"),
    Gpu("A10", _gib(221), "24 GB GDDR6"),
    Gpu("RTX3090", _gib(236), "24 GB GDDR6X"),
    Gpu("RTX4090", _gib(236), "24 GB GDDR6X"),
    Gpu("A100-40GB", _gib(394), "40 GB HBM2"),
    Gpu("A100-80GB", _gib(792), "80 GB HBM2e"),
    Gpu("H100-80GB", _gib(791), "80 GB HBM3"),
    Gpu("H200", _gib(1397), "141 GB HBM3e"),
    Gpu("B200", _gib(1784), "192 GB HBM3e, 180 GB usable on HGX systems"),
    Gpu("MI300X", _gib(1915), "192 GB HBM3"),
)}


def gpu(name: str) -> Gpu:
    """The GPU of that name, case and punctuation aside ('h100-80gb', 'RTX 4090'), or the one it begins
    ('h100'); ValueError naming the valid ones (or the candidates, where it begins several: 'a100')."""
    key = _squashed(name)
    exact = [g for g in GPUS.values() if _squashed(g.name) == key]
    begun = [g for g in GPUS.values() if key and _squashed(g.name).startswith(key)]
    if exact or len(begun) == 1:
        return (exact or begun)[0]
    if begun:
        raise ValueError(f"GPU {name!r} names {len(begun)}: {', '.join(g.name for g in begun)}; give one")
    raise ValueError(f"unknown GPU {name!r}; valid GPUs: {', '.join(GPUS)} (or --memory-budget SIZE)")


def _squashed(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())
