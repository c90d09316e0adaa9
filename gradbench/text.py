"""Text from results files (and their names) made inert where it is shown. A results file may come from
anyone: its control characters would run as a terminal's commands ('\x1b]0;...' retitles the window,
'\x1b[2J' clears the screen), and bidi controls would make what is shown differ from what is there."""
from __future__ import annotations

import re

# C0, DEL and C1 (ESC and CSI start a terminal's commands), and the bidi embeddings, overrides and isolates
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def first_line(what, limit: int = 240) -> str:
    """An exception's (or a text's) first line, at most ``limit`` characters: a one-line reason."""
    text = str(what).strip()
    lines = text.splitlines() or [type(what).__name__ if isinstance(what, BaseException) else ""]
    return lines[0][:limit]


def counted(n: int, noun: str) -> str:
    """'1 case', '3 cases': a count with its noun, plural where it is not one."""
    return f"{n} {noun}{'s' if n != 1 else ''}"


def terminal_text(text) -> str:
    """``text`` with its control characters shown escaped, as repr shows them ('\\x1b', '\\u202e')."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))
