"""A sweep as data: the grid, its shard, and the batches of cases workers measure, with their repeat and
attempt. Nothing here runs anything; an executor (executors/) runs a plan.

A batch is the cases of one workload group (a model, size, batch size, device and dtype, and a compile
and autocast setting: under compile a group's modes share one compiled model) for one repeat and one
attempt, in an order drawn at random per batch, so that slow drift of the machine favours no mode.
``repeat`` K measures every case in K separate worker processes; ``retry_untrusted`` N measures a case
whose time is untrusted again, up to N more times, after the first pass.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Iterable

from . import models as _models
from .case import STEPS, Case
from .migrate import LEGACY_SEQ_LEN
from .modes import DEFAULT_MODES
from .record import case_key

ISOLATION = ("worker", "case")  # a worker process per sweep (per repeat), or a fresh one per case


DEFAULT_SIZES = ("tiny", "small")  # the toys' and a user model's when no --sizes is given


@dataclass(frozen=True)
class Grid:
    """What to sweep. Every field is a list of values; cases are their product, but for sizes and the input
    axes, which each model takes as it offers them: a family the given sizes it has (``sizes`` None: the
    toys and user models tiny and small, a zoo family its first), one case per ``seq_lens`` value for a family
    that takes a seq_len (per ``image_sizes`` value for an image family; none given: the family's default), a
    user model the given seq_lens (none: null), and a family that takes neither axis null for both."""

    models: tuple[str, ...] = ("mlp", "cnn", "transformer")
    sizes: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] = (1, 8, 64)
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = DEFAULT_MODES
    steps: tuple[str, ...] = STEPS
    max_time_s: float = 0.5
    seed: int = 0
    cudnn_benchmark: bool = False
    compile: tuple[str, ...] = ("none",)
    autocast: tuple[str, ...] = ("none",)
    compile_cold: bool = False
    energy_sampling: bool = False
    head: str | None = None
    memory_budget: int | None = None  # bytes (--memory-budget); None: what each device has
    seq_lens: tuple[int, ...] = ()
    image_sizes: tuple[int, ...] = ()

    def sizes_for(self, model: str) -> tuple[str, ...]:
        """The sizes ``model`` runs at: of the given ones, those it offers (a user model takes any)."""
        family = _models.FAMILIES.get(model)
        if self.sizes is None:  # the toys' tiny and small; a reference family's first (its smallest)
            return family.sizes[:1] if family is not None and family not in _models.TOY_FAMILIES else DEFAULT_SIZES
        return self.sizes if family is None else tuple(s for s in self.sizes if s in family.sizes)

    def inputs_for(self, model: str) -> tuple[tuple[int | None, int | None], ...]:
        """(seq_len, image_size) of each workload of ``model``: the axis it takes, and null for the other."""
        family = _models.FAMILIES.get(model)
        if family is None:  # a user model: the given sequence lengths, if any
            return tuple((n, None) for n in self.seq_lens) or ((None, None),)
        if family.inputs == "seq_len":
            return tuple((n, None) for n in self.seq_lens or (family.default_input,))
        if family.inputs == "image_size":
            return tuple((None, n) for n in self.image_sizes or (family.default_input,))
        return ((None, None),)

    def check(self) -> None:
        """ValueError, in one line, for a size no model in the grid offers, a model left with no size, or an
        input axis no model takes."""
        families = {m: _models.FAMILIES[m] for m in self.models if m in _models.FAMILIES}
        offered = "; ".join(f"{f.name}: {', '.join(f.sizes)}" for f in families.values())
        if self.sizes is not None and len(families) == len(self.models):  # a user model takes any size
            for size in self.sizes:
                if not any(size in f.sizes for f in families.values()):
                    raise ValueError(f"unknown size {size!r}: no model in the grid offers it; valid sizes: {offered}")
        for model in families:
            if not self.sizes_for(model):
                raise ValueError(f"no size given for {model} (its sizes: {', '.join(families[model].sizes)}); "
                                 f"add one to --sizes, or run it apart")
        for axis, given in (("seq_len", self.seq_lens), ("image_size", self.image_sizes)):
            takes = [m for m in self.models if any(n is not None for pair in self.inputs_for(m)
                                                   for n in [pair[0 if axis == "seq_len" else 1]])]
            if given and not takes:
                who = ", ".join(f.name for f in _models.FAMILIES.values() if f.inputs == axis)
                user = " and user models" if axis == "seq_len" else ""
                raise ValueError(f"--{axis.replace('_', '-')} given, but no model in the grid takes one ({who}{user} "
                                 "do)")

    def cases(self) -> list[Case]:
        """All cases in a fixed order: by model, size and input axis, then grouped by workload, compile and
        autocast, modes and steps innermost."""
        return [
            Case(model, size, batch, device, dtype, mode, step, self.seed, self.max_time_s, self.cudnn_benchmark,
                 compile, autocast, self.compile_cold, self.energy_sampling, self.head, self.memory_budget,
                 seq_len=seq_len, image_size=image_size)
            for model in self.models
            for size in self.sizes_for(model)
            for seq_len, image_size in self.inputs_for(model)
            for batch, device, dtype, compile, autocast in itertools.product(
                self.batch_sizes, self.devices, self.dtypes, self.compile, self.autocast
            )
            for mode in self.modes
            for step in self.steps
        ]


def default_devices() -> tuple[str, ...]:
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


QUICK = dict(
    models=("mlp", "cnn", "transformer"), sizes=("tiny",), batch_sizes=(8, 64),
    steps=STEPS, max_time_s=0.2,
)


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N -> (I, N)."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"bad shard {text!r}; expected I/N, e.g. 1/4") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ValueError(f"bad shard {text!r}; expected I/N with 1 <= I <= N")
    return i, n


def shard(cases: list[Case], i: int, n: int) -> list[Case]:
    """Shard I of N: every N-th case of the fixed order, starting at I. The shards partition the cases."""
    return cases[i - 1 :: n]


def group_by_workload(cases: Iterable[Case]) -> list[list[Case]]:
    """Cases sharing a model and input batch, and under compile or autocast one compiled model."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group_key, []).append(case)
    return list(groups.values())


def order_key(case: Case) -> tuple:
    """What a group's order is drawn from. A workload that existed before the input axes (format 6: neither
    axis, or the toy transformer's 32 tokens) draws it from the key it had, so that a resumed sweep keeps its
    order; eager without autocast, from its workload as before 0.4."""
    key = case.workload_key
    if case.image_size is None and case.seq_len == LEGACY_SEQ_LEN.get(case.model):
        key = key[:6]  # (model, size, batch_size, device, dtype, seed)
    return key if (case.compile, case.autocast) == ("none", "none") else (*key, case.compile, case.autocast)


def shuffled(group: list[Case], seed: int | str) -> list[Case]:
    """The group's cases in an order drawn from the seed and the group, reproducible per sweep."""
    order = list(group)
    random.Random(f"{seed}:{order_key(group[0])}").shuffle(order)
    return order


def needs_retry(record: dict) -> bool:
    """An ok case whose time was judged untrusted: --retry-untrusted measures it again."""
    return record.get("status") == "ok" and record.get("time_trusted") is False


@dataclass(frozen=True)
class Batch:
    """Cases one worker measures in one go: one workload group, in its drawn order, for one repeat
    (the worker slot) and one attempt (1, then the retries of untrusted timings)."""

    cases: tuple[Case, ...]
    repeat: int
    attempt: int = 1


@dataclass(frozen=True)
class Plan:
    """What a sweep is to do, as data. ``done``: (case_key, repeat) pairs a results file already holds
    (resume), not measured again; ``untrusted_done``: those of them whose time is untrusted, as
    (case_key, repeat, attempts made), measured again with the retries that are left."""

    cases: tuple[Case, ...]
    repeat: int = 1
    retry_untrusted: int = 0
    isolate: str = "worker"
    done: frozenset = frozenset()
    untrusted_done: frozenset = frozenset()

    def __post_init__(self):
        if self.isolate not in ISOLATION:
            raise ValueError(f"unknown isolation {self.isolate!r}; valid: {', '.join(ISOLATION)}")
        if self.repeat < 1 or self.retry_untrusted < 0:
            raise ValueError(f"bad repeat {self.repeat} / retry_untrusted {self.retry_untrusted}; need repeat >= 1, "
                             "retries >= 0")

    @property
    def seed(self):
        return self.cases[0].seed if self.cases else 0

    @property
    def attempts(self) -> int:
        return self.retry_untrusted + 1

    def first_batches(self) -> list[Batch]:
        """The first attempt: every group, process 1, 2 .. K in turn, less what is done already."""
        batches = []
        for group in group_by_workload(self.cases):
            for r in range(1, self.repeat + 1):
                todo = [c for c in group if (case_key(c.identity()), r) not in self.done]
                if todo:
                    batches.append(Batch(tuple(shuffled(todo, f"{self.seed}:{r}")), r, 1))
        return self._isolated(batches)

    def resumed_retries(self) -> dict[int, dict[int, list[Case]]]:
        """attempt -> repeat -> cases whose standing record in the results file is untrusted, due again at
        the attempt after the last one made, while it is within 1 + retry_untrusted (a resumed run never
        repeats an attempt, nor makes more than were asked)."""
        due: dict[int, dict[int, list[Case]]] = {}
        by_key = {case_key(c.identity()): c for c in self.cases}
        for key, r, *made in sorted(self.untrusted_done, key=repr):
            attempt = (made[0] if made else 1) + 1
            if key in by_key and r <= self.repeat and attempt <= self.attempts:
                due.setdefault(attempt, {}).setdefault(r, []).append(by_key[key])
        return due

    def retry_batches(self, untrusted: dict[int, list[Case]], attempt: int) -> list[Batch]:
        """Attempt ``attempt`` (2 ..): the untrusted cases of each repeat again, on that repeat's slot."""
        return self._isolated([Batch(tuple(shuffled(g, f"{self.seed}:{r}:{attempt}")), r, attempt)
                               for r, again in sorted(untrusted.items()) for g in group_by_workload(again)])

    def _isolated(self, batches: list[Batch]) -> list[Batch]:
        """--isolate case: every case a batch of its own (so a fresh process)."""
        if self.isolate != "case":
            return batches
        return [Batch((case,), b.repeat, b.attempt) for b in batches for case in b.cases]
