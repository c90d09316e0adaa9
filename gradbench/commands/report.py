"""`gradbench report`: figures, report.md and a self-contained report.html from results (report/)."""
from __future__ import annotations

import os

from ..errors import BadInput
from ..text import terminal_text
from .arguments import load_results


def add_parser(sub):
    report = sub.add_parser("report", help="figures, report.md and a self-contained report.html from results")
    report.add_argument("results", nargs="+", help="gradbench JSONL files, asv result folders, pytest-benchmark JSON")
    report.add_argument("--out", help="the report folder (default: beside a single JSONL file, else results/report)")
    report.add_argument("--title", help="the report's title (default: 'gradbench report: ' and the inputs' names)")
    return report


def run(args) -> int:
    from ..report.document import write_report
    from ..runner import report_dir_for

    if args.out == "":
        raise BadInput("--out is empty; name a folder for the report, or leave --out out")
    df = load_results(args.results)
    out = args.out or (report_dir_for(args.results[0]) if len(args.results) == 1 and
                       args.results[0].endswith(".jsonl") else os.path.join("results", "report"))
    paths = write_report(df, out, title=args.title or "gradbench report: " + ", ".join(args.results))
    print(terminal_text(f"report: {paths['html']}") + "\n        " + terminal_text(paths['markdown'])
          + f"\n        {len(paths['figures'])} figure files in " + terminal_text(os.path.join(out, 'figures')))
    return 0
