"""Telling the user's Ctrl-C from a KeyboardInterrupt that a model's own code raised.

A model that raises KeyboardInterrupt (some training code ends a loop so) has failed, and its case is
recorded as an error like any other failure; the user's Ctrl-C must still stop the run. While model
code runs, SIGINT's handler is wrapped to note that the signal came: a KeyboardInterrupt without it
was raised by code. Where no SIGINT can raise one (a sweep worker ignores SIGINT: its manager
handles Ctrl-C) or the handler cannot be wrapped (a thread other than the main one, where Python
runs no signal handler), every KeyboardInterrupt is the code's.
"""
from __future__ import annotations

import os
import signal
import threading
import traceback


class InterruptWatch:
    """Within: ``signalled`` becomes true when SIGINT arrives; SIGINT's own handler still runs (and raises)."""

    def __init__(self):
        self.signalled = False
        self._previous = None

    def _noted(self, signum, frame):
        self.signalled = True
        return self._previous(signum, frame)

    def __enter__(self) -> "InterruptWatch":
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # SIG_IGN, SIG_DFL or a handler not set from Python raise no KeyboardInterrupt
                self._previous = previous
                signal.signal(signal.SIGINT, self._noted)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def raised_by_model(exc: KeyboardInterrupt) -> str:
    """The record's error for a KeyboardInterrupt the model's code raised: where, and its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (in {frames[-1].name}, {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    message = f": {exc}" if str(exc) else ""
    return f"KeyboardInterrupt raised inside the model's code, not by Ctrl-C{where}{message}"
