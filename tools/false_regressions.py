"""How often `gradbench compare --fail-above PCT` fails between runs of the same code on this machine.

Runs the same small sweep 2 x PAIRS times in a row, once per run with one process and once with
--repeat K, then compares consecutive pairs (1 vs 2, 3 vs 4, ...) and, as the recipe docs/comparing.md
recommends, the odd runs against the even ones (sides alternated in time). Prints the table
docs/studies/false-alarms.md and issue 10's note quote. Takes about PAIRS x 1.5 minutes on a 2-core machine with the defaults.

    .venv/bin/python tools/false_regressions.py [--pairs 10] [--repeat 3] [--fail-above 5] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pandas as pd

import gradbench
from gradbench.report.compare import compare, regressions

SWEEP = ["--models", "mlp", "cnn", "transformer", "--sizes", "tiny", "--batch-sizes", "8", "--steps", "forward",
         "--no-report"]


def run(out: str, extra: list[str]) -> None:
    if not os.path.exists(out):
        subprocess.run([sys.executable, "-m", "gradbench.cli", "run", *SWEEP, *extra, "--out", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def flagged(sides: list[list[str]], pct: float) -> tuple[int, int, int]:
    """(cases failing the gate, cases compared, untrusted records) with side A = sides[0]'s files."""
    frames = []
    for label, paths in zip("AB", sides):
        df = gradbench.load(paths, warn=lambda m: None)
        frames.append(df.assign(machine=label))
    df = pd.concat(frames, ignore_index=True)
    table, _, _ = compare(df, "machine")
    bad, _ = regressions(table, pct)
    ok = df[df["status"] == "ok"]
    return len(bad), len(table), int((ok["time_trusted"] == False).sum())  # noqa: E712


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--fail-above", type=float, default=5.0)
    p.add_argument("--out", default="results/runs/false-regressions")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n = 2 * args.pairs
    kinds = {"single": [], f"repeat{args.repeat}": ["--repeat", str(args.repeat)]}
    files = {kind: [os.path.join(args.out, f"{kind}-{i}.jsonl") for i in range(1, n + 1)] for kind in kinds}
    for i in range(n):  # the two kinds interleaved, so both see the same stretch of the machine's day
        for kind, extra in kinds.items():
            run(files[kind][i], extra)
            print(f"run {i + 1}/{n} {kind} done", file=sys.stderr)
    print(f"| each side | pairs that failed --fail-above {args.fail_above:g} | cases flagged | untrusted records |")
    print("|---|---|---|---|")
    for kind in kinds:
        results = [flagged([[files[kind][2 * k]], [files[kind][2 * k + 1]]], args.fail_above)
                   for k in range(args.pairs)]
        print(f"| {kind}, consecutive pairs | {sum(r[0] > 0 for r in results)} of {args.pairs} | "
              f"{sum(r[0] for r in results)} of {sum(r[1] for r in results)} | {sum(r[2] for r in results)} |")
        alternated = [flagged([files[kind][k:k + 6:2], files[kind][k + 1:k + 6:2]], args.fail_above)
                      for k in range(0, n - 5, 6)]
        if alternated:
            print(f"| {kind}, 3 runs a side alternated (A B A B A B) | {sum(r[0] > 0 for r in alternated)} of "
                  f"{len(alternated)} | {sum(r[0] for r in alternated)} of {sum(r[1] for r in alternated)} | "
                  f"{sum(r[2] for r in alternated)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
