"""What a manager and its worker process say to each other, as types (they travel pickled through a Pipe).

Manager -> worker: ``Measure`` (a batch of cases), or ``None`` to end. Worker -> manager, per batch:
for each case ``Started``, then ``Measured``; around a user model's first import ``Importing`` ..
``Imported``, and around a workload's build ``Building`` .. ``Built``, so that the manager knows what to
blame when the worker dies or overruns there; then ``BatchDone``. Each of Started, Importing and
Building starts a --timeout of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..case import Case


@dataclass(frozen=True)
class Measure:
    cases: tuple[Case, ...]
    run_id: str


@dataclass(frozen=True)
class Started:
    case: Case


@dataclass(frozen=True)
class Measured:
    record: dict


@dataclass(frozen=True)
class Importing:
    model: str


@dataclass(frozen=True)
class Imported:
    model: str


@dataclass(frozen=True)
class Building:
    workload_key: tuple


@dataclass(frozen=True)
class Built:
    workload_key: tuple


@dataclass(frozen=True)
class BatchDone:
    pass


# What the manager concludes when it hears nothing: the worker process is gone, or overran --timeout.
@dataclass(frozen=True)
class Died:
    pass


@dataclass(frozen=True)
class TimedOut:
    pass


STAGE_BEGINS = (Importing, Building)
STAGE_ENDS = (Imported, Built)
