"""Where a sweep's workers run. Local (executors/local.py, one worker at a time) is the default; gpus.py runs one
worker per GPU at once; slurm.py submits the sweep as a Slurm job array
(slurm_task.py is what each task runs), watches it (slurm_queue.py) and merges what its tasks record
(slurm_merge.py), and jobs.py keeps its jobs beside the results file."""
