"""The worker process: receives batches of cases (messages.Measure), measures each case through a Session
and sends back what it is doing and what it measured (messages.py). It imports torch; its manager does not
need to. Before each case the global state every case starts from is checked, and a change is named on
the record and undone."""
from __future__ import annotations

import contextlib
import signal
import sys

from . import messages

# Ctrl-C and SIGTERM (scancel, a time limit, `kill` of the process group) are the manager's to handle: it
# stops the workers, and the case in flight is not recorded as a crash of its own. Slurm's time-limit
# warning (USR2, which submitit asks for) too.
MANAGERS_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR2}


def _die_with_parent() -> None:
    """A killed manager must not leave a worker measuring on: ask Linux to end it too."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class _Reporter:
    """The worker's side of the stages: a user model's first import here, and each workload's build, are
    announced before and after, so that if either exits, crashes or hangs the process, the manager knows
    it was that and records every case of the model (or workload) so, not case by case."""

    def __init__(self, conn):
        self.conn = conn
        self.imported: set[str] = set()  # user models whose module this process has imported (or failed to)

    @contextlib.contextmanager
    def importing(self, model: str):
        if model in self.imported:
            yield
            return
        self.conn.send(messages.Importing(model))
        try:
            yield
        finally:
            self.imported.add(model)
            self.conn.send(messages.Imported(model))

    @contextlib.contextmanager
    def building(self, workload_key: tuple):
        self.conn.send(messages.Building(workload_key))
        try:
            yield
        finally:
            self.conn.send(messages.Built(workload_key))


def worker_main(conn, threads: int | None, record_rss: bool) -> None:
    """Measure batches until told to stop (None) or the manager is gone."""
    _die_with_parent()
    for signum in MANAGERS_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MANAGERS_SIGNALS)  # held since the spawn (pool.Worker)
    import torch

    from .. import state
    from ..session import Session

    if threads:
        torch.set_num_threads(threads)
    expected = state.expected_state(seed=None)  # captured before any model's code runs here
    reporter = _Reporter(conn)
    session = Session(import_scope=reporter.importing, building=reporter.building)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        session.run_id = message.run_id
        for case in message.cases:
            conn.send(messages.Started(case))
            leaked = state.check_and_restore(expected)
            record = session.measure(case)
            if leaked:
                record = _name_the_leak(record, leaked, session.last_model)
            if record_rss:
                from ..measure.memory import process_resident_peak_bytes

                record = record.replace(rss_peak_bytes=process_resident_peak_bytes())
            conn.send(messages.Measured(record))
        session.release()  # idle between batches, a worker holds no model: under --repeat K, K workers are alive
        conn.send(messages.BatchDone())


def _name_the_leak(record, leaked: list[str], last_model: str | None):
    """Global state found changed before this case: code that ran outside any measured case changed it."""
    from .. import state

    warning = state.describe(f"code that ran before this case (last model built: {last_model!r})",
                             "outside a measured case", leaked)
    state.announce(warning)
    return record.replace(global_state_warning="; ".join(w for w in (record["global_state_warning"], warning) if w))
