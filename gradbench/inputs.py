"""Reading a file the user named as input (results, --config, asv's machine file). A named pipe, a device or
a socket is refused, never read: reading one waits for a writer, or never ends (`gradbench report FIFO`
hung). Directories are for the callers to judge (an asv results folder is one)."""
from __future__ import annotations

import os
import stat

NOT_REGULAR = "is not a regular file (a named pipe, a device or a socket)"


class NotRegularFile(ValueError):
    """The path names something other than a regular file; the message names it."""


def read_regular(path) -> bytes:
    """The bytes of the regular file ``path``; NotRegularFile otherwise, OSError as open() raises it.
    Checked before opening (a device is never opened), then on what opened (a pipe swapped in meanwhile
    opens without waiting, O_NONBLOCK, and is refused too)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotRegularFile(f"{str(path)!r} {NOT_REGULAR}")
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotRegularFile(f"{str(path)!r} {NOT_REGULAR}")
        return f.read()
