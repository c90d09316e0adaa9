"""What every executor offers: ``run(plan, write, on_record)`` -> Progress."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..plan import Plan


@dataclass
class Progress:
    """Counts and timing the manager reports as it goes."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    statuses: dict = field(default_factory=dict)

    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (time.perf_counter() - self.started) / self.done * (self.total - self.done)

    def count(self, record: dict) -> None:
        self.done += 1
        self.statuses[record["status"]] = self.statuses.get(record["status"], 0) + 1


class Executor(Protocol):
    def run(self, plan: Plan, write: Callable[[dict], None],
            on_record: Callable[[dict, Progress], None] | None = None) -> Progress:
        """Measure the plan's cases, handing every record to ``write`` as it arrives (and to ``on_record``
        with the progress); a case that fails is a record, never an exception."""
        ...
