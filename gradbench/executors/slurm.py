"""The Slurm executor: the plan as one job array, submitted through submitit, its tasks' records merged into
--out as they end (launch/slurm.py does the work; only a `--launcher slurm` run imports it)."""
from __future__ import annotations

import dataclasses
from typing import Callable

from ..plan import Plan
from .base import Progress


class SlurmExecutor:
    def __init__(self, out: str, settings, run_id: str, announce: Callable):
        self.out, self.settings, self.run_id, self.announce = out, settings, run_id, announce

    def run(self, plan: Plan, write: Callable[[dict], None],
            on_record: Callable[[dict, Progress], None] | None = None) -> Progress:
        """Re-attach to --out's unmerged jobs, then submit what the plan still lacks. What is done is read
        again from --out after each merge (the plan's ``done`` is what it held before), and the tasks print
        their own progress into Slurm's logs, so ``on_record`` is not called."""
        from ..launch.slurm import sweep_on_slurm
        from ..resume import previous_results

        settings = dataclasses.replace(self.settings, cases=plan.cases, repeat=plan.repeat,
                                       retry_untrusted=plan.retry_untrusted, isolate=plan.isolate)
        return sweep_on_slurm(self.out, settings, self.run_id, write, announce=self.announce,
                              previous_for=lambda: previous_results(self.out, plan.cases, plan.repeat,
                                                                    settings.threads, this_machine=False))
