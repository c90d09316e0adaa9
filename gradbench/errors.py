"""The two errors a user sees as one line instead of a traceback, their exit statuses, and how such a
line names an option."""
from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_WRITE_FAILED = 1


class BadInput(Exception):
    """A user error (a value, a file, a setting): one line, exit status 2, nothing written."""


class WriteFailed(Exception):
    """An output could not be written (disk full, read-only, too large): one line, exit status 1.
    What was written before it is intact; no file is left half-written."""


def cannot_write(what: str, path, exc: OSError, after: str = "") -> Exception:
    """The error for an output that cannot be opened or written: a full disk (or quota, or file size
    limit) or an I/O error is a write failure (exit 1); a path that cannot be written at all (no
    permission, a folder, a missing drive) is bad input (exit 2)."""
    import errno

    failed = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
    reason = "a part of its path is a file, not a folder" if exc.errno == errno.EEXIST else exc.strerror or exc
    message = f"cannot write {what} {str(path)!r}: {reason}{after}"
    return WriteFailed(message) if failed else BadInput(message)


def option(key: str) -> str:
    """A setting's key as the option a message names it by: max_time -> --max-time."""
    return f"--{key.replace('_', '-')}"
