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

from .case import STEPS, Case
from .modes import DEFAULT_MODES
from .record import case_key

ISOLATION = ("worker", "case")  # a worker process per sweep (per repeat), or a fresh one per case


@dataclass(frozen=True)
class Grid:
    """What to sweep. Every field is a list of values; cases are their product."""

    models: tuple[str, ...] = ("mlp", "cnn", "transformer")
    sizes: tuple[str, ...] = ("tiny", "small")
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

    def cases(self) -> list[Case]:
        """All cases in a fixed order: grouped by workload, compile and autocast, modes and steps innermost."""
        return [
            Case(model, size, batch, device, dtype, mode, step, self.seed, self.max_time_s, self.cudnn_benchmark,
                 compile, autocast, self.compile_cold, self.energy_sampling, self.head, self.memory_budget)
            for model, size, batch, device, dtype, compile, autocast in itertools.product(
                self.models, self.sizes, self.batch_sizes, self.devices, self.dtypes, self.compile, self.autocast
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


def shuffled(group: list[Case], seed: int | str) -> list[Case]:
    """The group's cases in an order drawn from the seed and the group, reproducible per sweep."""
    order = list(group)
    first = group[0]
    key = first.workload_key if first.group_key[-2:] == ("none", "none") else first.group_key  # eager: as before 0.4
    random.Random(f"{seed}:{key}").shuffle(order)
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
