"""Files that are rewritten whole (report pages, figures, tables, asv's machine file) are written to a
temporary file beside them and renamed over them, so a full disk or a kill never leaves one half-written."""
from __future__ import annotations

import contextlib
import os
import tempfile

from .errors import cannot_write


@contextlib.contextmanager
def replaced(path: str, what: str = "file"):
    """Yield a temporary path to write; on success it replaces ``path`` in one rename. An OSError while
    writing becomes one line naming ``path`` (errors.cannot_write), and the old file is left as it was."""
    target = os.path.realpath(path)  # a symlink (~/.asv-machine.json in a dotfiles repo) stays a symlink
    directory, base = os.path.dirname(target), os.path.basename(target)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + os.path.splitext(base)[1], dir=directory)
        os.close(fd)
    except OSError as exc:
        raise cannot_write(what, path, exc) from None
    try:
        yield temporary
        try:  # the old file's permissions, or what open() would have given a new one (not mkstemp's 0600)
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except OSError as exc:
        raise cannot_write(what, path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str, text: str, what: str = "file") -> None:
    with replaced(path, what) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
