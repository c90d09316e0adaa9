"""Executors run a plan (plan.py): ``local`` one worker process at a time, or one pinned worker per GPU
(``--gpus``); ``slurm`` a Slurm job array (launch/slurm.py). Each takes the plan and a ``write`` for every
record, and returns the Progress; base.py declares that interface."""
