"""Writing results: one record a line to a JSONL file, each line whole or not at all, and the lock
that lets one run at a time write a results file. Nothing here reads results (results.py does)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Mapping

from .errors import WriteFailed
from .record import Record


def as_written(record: Mapping) -> Record:
    """The Record a JsonlWriter writes of a Record or a draft (the dict measuring code fills): declared fields
    of the declared kinds only, NaN and infinity as null. Anything else is made a Record, which refuses what
    breaks the schema (InvalidRecord, a TypeError): a draft's undeclared or mistyped field, and an unknown
    field a record read from an old file kept (it is never written again)."""
    return record if isinstance(record, Record) and not record.unknown else Record(record)

class ResultsLocked(Exception):
    """Another run is writing this results file."""


class ResultsLock:
    """An exclusive lock on a results file for one run, so that two runs never both measure into one
    file, by whatever name, symlink or hard link they reach it: the lock (flock) is on the file itself,
    which is created if absent. The kernel drops it when the process ends, however it ends."""

    def __init__(self, path):
        import fcntl

        self.path = str(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "ab")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _flock_holder(os.fstat(self._file.fileno()))
            self._file.close()
            raise ResultsLocked(f"{self.path!r} is being written by another gradbench run ({holder}); "
                                "wait for it, or choose another --out") from None

    def release(self) -> None:
        self._file.close()  # closing drops the lock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _flock_holder(stat: os.stat_result) -> str:
    """'pid N' of the process holding a flock on the file (Linux /proc/locks), else 'another process'."""
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and device in parts:
                    return f"pid {parts[parts.index(device) - 1]}"
    except OSError:
        pass
    return "another process"


class JsonlWriter:
    """Appends records one line at a time, each written whole and fsynced, so a kill loses at most the
    line in flight. A line that cannot be written whole (disk full, quota, file size limit) is cut
    back off the file and WriteFailed raised: every record before it is intact, no partial line left."""

    def __init__(self, path, then: str | None = None):
        """``then``: what the user does once there is room again (a run resumes; other writers say theirs)."""
        self.path = str(path)
        self.then = then or f"continue with --out {self.path} --resume"
        self.written = 0
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        # A previous run killed mid-write may have left a partial line: start on a fresh line.
        end = os.lseek(self._fd, 0, os.SEEK_END)
        if end > 0 and os.pread(self._fd, 1, end - 1) != b"\n":
            self._append(b"\n")

    def _append(self, data: bytes) -> None:
        before = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                n = os.write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
            os.fsync(self._fd)
        except BaseException as exc:  # a signal's exception mid-line too: the line goes, whole
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            if not isinstance(exc, OSError):
                raise
            raise WriteFailed(f"cannot write results to {self.path!r}: {exc.strerror or exc}; the {self.written} "
                              f"records this run wrote before it are intact; make room, then {self.then}") from None

    def write(self, record: Mapping) -> Record:
        """Append a Record, or a draft (frozen into a Record first: nothing undeclared or of the wrong kind is
        written); returns the Record written."""
        frozen = as_written(record)
        self._append((json.dumps(frozen.to_json(), allow_nan=False) + "\n").encode())
        self.written += 1
        return frozen

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def jsonl_out(out: str | None, folder: str, run_id: str) -> str:
    """A command's --out JSONL path, checked: empty or a folder is bad input; none is results/FOLDER/RUN_ID.jsonl."""
    from .errors import BadInput

    if out == "":
        raise BadInput(f"--out is empty; name a JSONL file, or leave --out out for results/{folder}/RUN_ID.jsonl")
    out = out or os.path.join("results", folder, f"{run_id}.jsonl")
    if os.path.isdir(out):
        raise BadInput(f"--out {out!r} is a folder; name a JSONL file (e.g. {os.path.join(out, run_id + '.jsonl')})")
    return out


def opened_jsonl(out: str, then: str) -> "JsonlWriter":
    """A JsonlWriter on --out, or the one-line error for a path that cannot be written (errors.cannot_write)."""
    from .errors import cannot_write

    try:
        return JsonlWriter(out, then=then)
    except OSError as exc:
        raise cannot_write("--out", out, exc) from None
