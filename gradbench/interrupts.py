"""Telling the user's Ctrl-C, or a SIGTERM, from a KeyboardInterrupt or SystemExit that a model's own code raised.

A model that raises KeyboardInterrupt (some training code ends a loop so) or calls sys.exit() (a script's
forward) has failed, and its case is recorded as an error like any other failure; the user's Ctrl-C and a
SIGTERM whose handler raises SystemExit (the runner's Terminated, a Slurm task's) must still stop the run.
While model code runs, SIGINT's and SIGTERM's handlers are wrapped to note that the signal came: a
KeyboardInterrupt or SystemExit without it was raised by code. Where no signal can raise one (a sweep
worker ignores SIGINT and SIGTERM: its manager handles them) or the handler cannot be wrapped (a thread
other than the main one, where Python runs no signal handler), every one is the code's.
"""
from __future__ import annotations

import os
import signal
import threading
import traceback


class InterruptWatch:
    """Within: ``signalled`` becomes true when SIGINT arrives, ``terminated`` when SIGTERM does; their own
    handlers still run (and raise)."""

    WATCHED = {signal.SIGINT: "signalled", signal.SIGTERM: "terminated"}

    def __init__(self):
        self.signalled = False
        self.terminated = False
        self._previous: dict = {}

    def _noted(self, signum, frame):
        setattr(self, self.WATCHED[signum], True)
        return self._previous[signum](signum, frame)

    def __enter__(self) -> "InterruptWatch":
        if threading.current_thread() is threading.main_thread():
            for signum in self.WATCHED:
                previous = signal.getsignal(signum)
                if callable(previous):  # SIG_IGN, SIG_DFL or a handler not set from Python raise nothing
                    self._previous[signum] = previous
                    signal.signal(signum, self._noted)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def by_signal(self, exc: BaseException) -> bool:
        """Whether ``exc`` (a KeyboardInterrupt or SystemExit) came of a signal, and must stop the run."""
        return self.signalled if isinstance(exc, KeyboardInterrupt) else self.terminated


def raised_by_model(exc: BaseException) -> str:
    """The record's error for a KeyboardInterrupt or SystemExit the model's code raised: where, and its
    message or exit code."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (in {frames[-1].name}, {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SystemExit):
        return f"SystemExit raised inside the model's code (sys.exit({exc.code!r})), not by a signal{where}"
    message = f": {exc}" if str(exc) else ""
    return f"KeyboardInterrupt raised inside the model's code, not by Ctrl-C{where}{message}"
