"""`--gpus 0,1,2,3` (or `all`): one worker per GPU, all at once, each pinned to its GPU.

A GPU measures one case at a time, so workers on different GPUs do not disturb each other's timings
(each has its own device; they share only the host). Workers on one CPU would: concurrent workers are
refused on CPU. Each GPU takes the next workload from one queue when it is free, so a slow model does
not hold the others back; every workload runs once, and never two at once on one GPU.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Callable, Sequence

from ..errors import BadInput

_SPAWN_LOCK = threading.Lock()  # os.environ is one per process: pin one worker's start at a time


def parse_gpus(text: str) -> tuple[str, ...]:
    """'0,1,3' -> ('0', '1', '3'); 'all' -> ('all',). Ids are the machine's CUDA indexes, each given once."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if items == ["all"]:
        return ("all",)
    if not items or not all(t.isdigit() for t in items):
        raise BadInput(f"bad --gpus {text!r}; expected GPU indexes such as 0,1,2,3, or all")
    if len(set(map(int, items))) != len(items):
        twice = next(t for t in items if [int(i) for i in items].count(int(t)) > 1)
        raise BadInput(f"bad --gpus {text!r}: GPU {int(twice)} given twice; one worker per GPU, never two on one GPU")
    return tuple(str(int(t)) for t in items)


def resolve(gpus: Sequence[str], visible: int) -> tuple[str, ...]:
    """The GPU ids to pin workers to, given how many CUDA devices this process sees."""
    if visible < 1:
        raise BadInput("--gpus: no CUDA GPU is visible here (CUDA_VISIBLE_DEVICES="
                       f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); --gpus needs GPUs")
    if tuple(gpus) == ("all",):
        return tuple(str(i) for i in range(visible))
    missing = [g for g in gpus if int(g) >= visible]
    if missing:
        raise BadInput(f"--gpus {','.join(gpus)}: GPU {missing[0]} does not exist; valid here: "
                       f"{', '.join(map(str, range(visible)))} (or all)")
    return tuple(gpus)


def check_cases(cases, gpus) -> None:
    """--gpus measures CUDA cases only, each worker on `cuda` (its one GPU)."""
    devices = sorted({c.device for c in cases})
    if any(d == "cpu" for d in devices):
        raise BadInput("--gpus runs one worker per GPU at once; concurrent workers on the CPU would disturb each "
                       "other's timings, so cpu cases are refused: measure them in a run without --gpus "
                       "(or give --devices cuda)")
    pinned = [d for d in devices if ":" in d]
    if pinned:
        raise BadInput(f"--gpus pins each worker to one GPU, which it sees as cuda; --devices {pinned[0]} names a "
                       "GPU itself: give --devices cuda")


def physical_id(gpu: str) -> str:
    """The id to put in CUDA_VISIBLE_DEVICES: an index into what this process sees (it may itself be
    restricted, by Slurm or the user), translated to what the machine calls it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return gpu
    names = [v.strip() for v in visible.split(",") if v.strip()]
    return names[int(gpu)] if int(gpu) < len(names) else gpu


@contextlib.contextmanager
def pinned_environment(gpu: str | None):
    """Around a worker's start: the spawned interpreter inherits CUDA_VISIBLE_DEVICES=<its GPU>, so it
    sees that GPU only, as cuda:0, before torch is imported there."""
    if gpu is None:
        yield
        return
    with _SPAWN_LOCK:
        before = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = physical_id(gpu)
        try:
            yield
        finally:
            if before is None:
                del os.environ["CUDA_VISIBLE_DEVICES"]
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = before


def run_on_gpus(jobs: Sequence, gpus: Sequence[str], run_job: Callable[[str, object], None],
                stop: threading.Event | None = None) -> None:
    """Run every job once: one thread per GPU takes the next job from a shared queue when its GPU is
    free. The first exception in any thread stops the others taking new jobs and is raised here."""
    stop = stop or threading.Event()
    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    failures: list[BaseException] = []

    def serve(gpu: str) -> None:
        while not stop.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                run_job(gpu, job)
            except BaseException as exc:  # noqa: B036 - handed to the caller's thread
                failures.append(exc)
                stop.set()
                return

    threads = [threading.Thread(target=serve, args=(gpu,), name=f"gpu-{gpu}", daemon=True) for gpu in gpus]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # short waits: Ctrl-C reaches this (the main) thread
    except BaseException:
        stop.set()
        raise
    if failures:
        raise failures[0]
