"""A worker that speaks JSON lines on stdin and stdout, for a manager that runs gradbench at another git
revision or under another Python (`gradbench ab`): nothing crosses but JSON, so neither side needs the
other's classes, pickle format or Python version.

Run as ``PYTHON -m gradbench.executors.stdio_worker [--threads N]``. It imports torch and gradbench, writes a
hello line (``protocol``, versions, where gradbench and torch were imported from) and then waits for
``{"fork": true}``: it forks a fresh measuring process, which says ``{"forked": PID}`` and answers the
messages below until ``{"end": true}``; then this process says ``{"ended": EXIT_STATUS}`` and waits for the
next fork. The process forked from has run no model code, no parallel kernel and no CUDA call, so a measuring
process (a round's, or one that replaces a process that crashed or overran) starts in milliseconds, without
importing torch again. In the measuring process, one case at a time:

- ``{"open": {Case fields}, "run_id": ..., "passes": "all" | "timing"}``: with ``all``, the case is measured
  through a Session (every pass but the timing, which the blocks do), then its step is set up again and kept ready; with
  ``timing``, only set up (no untimed pass). Reply ``{"record": {...}, "opened": bool, "model_file": ...}``:
  the whole record, or the set-up's (identity and provenance); ``opened`` false when the case did not run
  (the record says why). model_file: where a user model's module was loaded from, so the manager can tell
  the revision's code ran.
- ``{"block": SECONDS}``: the ready step warmed again and timed until SECONDS have passed (at least 3
  samples); reply ``{"median": s, "samples": n, "measured_s": s}``.
- ``{"close": true}``: the step's mode undone, weights restored; reply ``{"closed": true}``.

Anything else gets ``{"error": "..."}``; end of input ends both processes. The model's own prints go to
stderr: stdout is the protocol's.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys

PROTOCOL = 2  # 2: a block samples up to its cap and no further (1: on for precision, up to 3 times the cap)
BLOCK_MIN_SAMPLES = 3


def _channel():
    """The protocol's stream (the original stdout); fd 1 becomes stderr, for whatever else prints."""
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    return channel


def _send(channel, message: dict) -> None:
    channel.write(json.dumps(message, allow_nan=False) + "\n")
    channel.flush()


def _model_file(model: str) -> str | None:
    """The file a user model's module was loaded from in this process (None for a built-in model)."""
    from ..models import is_user_model

    if not is_user_model(model):
        return None
    spec = model.rsplit(":", 1)[0]
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and (os.path.abspath(path) == os.path.abspath(spec) or getattr(module, "__name__", None) == spec):
            return os.path.abspath(path)
    return None


class _Cases:
    """The one case this worker holds ready between ``open`` and ``close``."""

    def __init__(self, session):
        self.session = session
        self.stack: contextlib.ExitStack | None = None
        self.step = None
        self.device = None

    def open(self, case, passes: str) -> tuple[dict, bool]:
        from ..record import Record

        self.close()
        record = self.session.measure(case, timed=False) if passes == "all" else None
        if record is not None and record["status"] != "ok":
            return record.to_json(), False
        stack = contextlib.ExitStack()
        try:
            prepared = stack.enter_context(self.session.prepared(case, memory_only=True, untimed=False))
        except Exception as exc:  # noqa: BLE001 - a case that fails is a result, as in a sweep
            stack.close()
            if record is not None:
                return record.to_json(), False
            from ..session import failed, failure_record

            status, message = failed(exc)
            return failure_record(case, self.session.run_id, status, message).to_json(), False
        self.stack, self.step = stack, prepared.step
        self.device = self.session.workload(case).device
        if record is None:
            record = Record(prepared.record, status="ok")
        return record.to_json(), True

    def block(self, seconds: float) -> dict:
        from ..measure.timing import time_step

        if self.step is None:
            return {"error": "no case is open"}
        # the step warmed again (the other side ran in between: its first steps are slow for a while), then at
        # least 3 samples and none past the cap for precision: the comparison's precision comes from its many
        # alternated blocks, and a block that samples on for precision costs 3 times as much
        timing = time_step(self.step, self.device, max_time_s=seconds, min_samples=BLOCK_MIN_SAMPLES,
                           precise=math.inf, extend=1.0)
        return {"median": timing.median, "samples": timing.n_samples, "measured_s": timing.measured_s}

    def close(self) -> None:
        if self.stack is not None:
            stack, self.stack, self.step = self.stack, None, None
            stack.close()


def _read() -> dict | None:
    line = sys.stdin.readline()
    while line and not line.strip():
        line = sys.stdin.readline()
    return json.loads(line) if line else None


def _measure(channel, threads: int | None) -> None:
    """The forked measuring process: serve cases until told to end (or input ends)."""
    import torch

    from .. import state
    from ..case import Case
    from ..session import Session

    from .worker import _die_with_parent

    _die_with_parent()  # a fork does not inherit it
    if os.getppid() == 1:  # the parent died before that: nobody to answer
        os._exit(1)
    if threads:
        torch.set_num_threads(threads)
    _send(channel, {"forked": os.getpid()})
    expected = state.expected_state(seed=None)
    session = Session()
    cases = _Cases(session)
    while True:
        message = _read()
        if message is None or "end" in message:
            cases.close()
            return
        if "block" in message:
            _send(channel, cases.block(float(message["block"])))
        elif "close" in message:
            cases.close()
            _send(channel, {"closed": True})
        elif "open" in message:
            try:
                case = Case(**message["open"]).validate()
            except (TypeError, ValueError) as exc:
                _send(channel, {"error": f"{type(exc).__name__}: {exc}"})
                continue
            cases.close()
            session.run_id = message.get("run_id") or session.run_id
            state.check_and_restore(expected)
            record, opened = cases.open(case, message.get("passes", "all"))
            _send(channel, {"record": record, "opened": opened, "model_file": _model_file(case.model)})
        else:
            _send(channel, {"error": f"unknown message {sorted(message)!r}"})


def _import_what_the_passes_import() -> None:
    """Modules the measuring passes import on first use, imported once here rather than in every forked
    process: torch._dynamo alone (with sympy and torch.distributed behind it) took 1.3 s of each side's
    full round, a forward's first call in the behaviour probes imports it. Importing runs no model code, no
    kernel and no CUDA call."""
    import numpy.random  # noqa: F401
    import torch._dynamo  # noqa: F401
    import torch.profiler  # noqa: F401
    import torch.utils.flop_counter  # noqa: F401

    from ..measure import behaviour, flops, memory, tensors, timing  # noqa: F401
    from .. import pipeline  # noqa: F401


def main(argv: list[str]) -> int:
    from .worker import MANAGERS_SIGNALS, _die_with_parent

    channel = _channel()
    _die_with_parent()
    for signum in MANAGERS_SIGNALS:  # Ctrl-C is the manager's: it stops this process by closing stdin
        signal.signal(signum, signal.SIG_IGN)
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else None
    import torch

    import gradbench
    from .. import session  # noqa: F401 - imported once here, not in every forked process

    _import_what_the_passes_import()

    _send(channel, {"protocol": PROTOCOL, "gradbench_version": gradbench.__version__,
                    "gradbench_path": os.path.dirname(os.path.abspath(gradbench.__file__)),
                    "torch": torch.__version__, "torch_path": os.path.dirname(os.path.abspath(torch.__file__)),
                    "python": sys.version.split()[0], "executable": sys.executable})
    while True:
        message = _read()
        if message is None:  # the manager is done: no interpreter teardown to wait for (0.7 s with torch)
            channel.flush()
            sys.stderr.flush()
            os._exit(0)
        if "fork" not in message:
            _send(channel, {"error": f"unknown message {sorted(message)!r}; fork first"})
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _measure(channel, threads)
            except BaseException:  # noqa: BLE001 - told on stderr; the parent says it ended
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                channel.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        _send(channel, {"ended": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
