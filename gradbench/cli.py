"""The command line: `gradbench case`, a thin front-end over the library."""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, no traceback
        self.exit(2, f"gradbench: error: {message}\n")


def _bad_input(message: str) -> int:
    print(f"gradbench: error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gradbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    case = sub.add_parser("case", help="measure one case and print its record as JSON")
    case.add_argument("--model", default="mlp")
    case.add_argument("--size", default="small")
    case.add_argument("--batch-size", type=int, default=32)
    case.add_argument("--device", default="cpu")
    case.add_argument("--dtype", default="float32")
    case.add_argument("--mode", default="eval_no_grad")
    case.add_argument("--step", default="forward")
    case.add_argument("--max-time", type=float, default=2.0, help="seconds of timing per case (default 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "case":
        from .case import run_case

        try:
            record = run_case(model=args.model, size=args.size, batch_size=args.batch_size, device=args.device,
                              dtype=args.dtype, mode=args.mode, step=args.step, max_time_s=args.max_time)
        except ValueError as exc:
            return _bad_input(str(exc))
        print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
