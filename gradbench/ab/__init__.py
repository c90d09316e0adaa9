"""`gradbench ab`: one model's cases under two revisions or two Python environments, in randomized
interleaved rounds. verdict.py is the statistics (pure: the report reads it too); sides.py makes each side
runnable (worktree, interpreter); rounds.py runs the rounds through executors/stdio_worker.py."""
