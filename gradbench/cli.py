"""`gradbench run | report | compare | explain | list | env | selfcheck | case | asv-machine | capacity`: the
parser, assembled from one module per command (commands/), and the dispatch to it. Nothing here measures,
reads or writes results itself.

Bad input anywhere gives one line on stderr naming the bad value and the valid ones, exit status 2,
no traceback, and no results file touched; an output that cannot be written gives one line and
exit status 1, with what was written before it intact (errors.py).
"""
from __future__ import annotations

import argparse
import sys

from .version import __version__
from .commands import COMMANDS
from .errors import EXIT_BAD_INPUT, EXIT_WRITE_FAILED, BadInput, WriteFailed
from .text import terminal_text


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"gradbench: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every command's options with it (a CLI reference can be generated from it)."""
    parser = _Parser(prog="gradbench", description="Measure what eval(), no_grad(), requires_grad=False and "
                     "inference_mode really cost and save.")
    parser.add_argument("--version", action="version", version=f"gradbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except BadInput as exc:  # one line, whatever a file's name or contents put in it
        print(f"gradbench: error: {terminal_text(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WriteFailed as exc:
        print(f"gradbench: error: {terminal_text(exc)}", file=sys.stderr)
        return EXIT_WRITE_FAILED


if __name__ == "__main__":
    sys.exit(main())
