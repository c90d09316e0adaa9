"""Worker processes, spawned fresh (never forked from a process that may hold CUDA or threads), one per
slot: a slot is a repeat's process (--repeat K keeps K apart). A lost worker is replaced on its slot's
next use."""
from __future__ import annotations

import multiprocessing
import signal

from ..launch.gpus import pinned_environment
from .worker import MANAGERS_SIGNALS, worker_main


class Worker:
    def __init__(self, context, threads, record_rss, gpu: str | None = None):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, threads, record_rss), daemon=True)
        # The signals a worker leaves to its manager are held (blocked) from the fork on, until worker_main
        # ignores them: a fresh worker still importing torch would otherwise die of one (Slurm's USR2 warning).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, MANAGERS_SIGNALS)
        try:
            with pinned_environment(gpu):  # --gpus: the worker sees its GPU only
                self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.is_alive():
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class WorkerPool:
    """One worker process per slot (the repeat index); a lost worker is replaced on its slot's next use."""

    def __init__(self, threads: int | None, record_rss: bool, gpu: str | None = None):
        self.context = multiprocessing.get_context("spawn")
        self.threads, self.record_rss, self.gpu = threads, record_rss, gpu
        self.workers: dict[int, Worker] = {}

    def get(self, slot: int) -> Worker:
        """The slot's worker; a fresh one if it has none, or if its worker has died while idle (a worker
        dies with the thread that started it: PR_SET_PDEATHSIG follows threads, and --gpus starts workers
        from a thread per GPU)."""
        worker = self.workers.get(slot)
        if worker is not None and not worker.process.is_alive():
            self.stop(slot)
            worker = None
        if worker is None:
            worker = self.workers[slot] = Worker(self.context, self.threads, self.record_rss, self.gpu)
        return worker

    def stop(self, slot: int, kill: bool = False) -> None:
        worker = self.workers.pop(slot, None)
        if worker is not None:
            worker.stop(kill=kill)

    def stop_all(self, kill: bool = False) -> None:
        for slot in list(self.workers):
            self.stop(slot, kill)
