"""`gradbench compare`: the same cases side by side across machines, GPUs, versions (report/compare.py)."""
from __future__ import annotations

import os

from ..errors import BadInput
from ..settings import argument
from ..text import terminal_text
from .arguments import load_results


def add_parser(sub):
    compare = sub.add_parser("compare", help="the same cases side by side across machines, GPUs, versions")
    compare.add_argument("results", nargs="+", help="gradbench JSONL files, asv result folders, pytest-benchmark JSON")
    compare.add_argument("--by", choices=("machine", "gpu", "torch", "commit", "device", "run", "file", "harness",
                                          "compile", "autocast"),
                         required=True, help="what differs between the sides (run: run_id; file: input file; "
                                             "harness: gradbench run, asv or pytest-benchmark timing the same cases)")
    compare.add_argument("--fail-above", type=argument(float, minimum=0), metavar="PCT",
                         help="exit 1 when a case is slower by more than PCT percent, its whole CI beyond, or "
                              "when no case is on both sides; cases with untrusted timings are listed, never "
                              "failed on")
    compare.add_argument("--out", help="also write the table (CSV) and a figure into this folder")
    return compare


def run(args) -> int:
    from ..report.compare import compare, print_comparison, write_comparison

    if args.out == "":
        raise BadInput("--out is empty; name a folder for the table and figure, or leave --out out")
    df = load_results(args.results)
    try:
        table, sides, only = compare(df, args.by)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise BadInput(f"--out {args.out!r} is a file; compare --out takes a folder for the table and figure")
    if args.out:
        from ..report.files import output_root

        output_root(args.out)  # refused before the comparison is printed: one line, not a table and then a line
    exit_status = print_comparison(table, sides, only, args.by, args.fail_above)
    if args.out:
        for path in write_comparison(df, table, args.by, args.out):
            print(f"wrote: {terminal_text(path)}")
    return exit_status
