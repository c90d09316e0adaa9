"""`gradbench ab BASE CANDIDATE`: the same grid under two revisions or two Python environments, in randomized
interleaved rounds, with a verdict per case and a gate for CI (ab/; the report's section: report/ab.py)."""
from __future__ import annotations

import contextlib
import os
import signal
import sys

from ..settings import argument
from .arguments import INTEGER
from .run import _add_grid

DEFAULT_FAIL_ABOVE = 5.0
DEFAULT_MAX_ROUNDS = 20


def add_parser(sub):
    p = sub.add_parser("ab", help="compare two revisions or two Python environments on the same grid, "
                       "in randomized interleaved rounds; exit 1 when the candidate is slower or uses more memory",
                       description="Compare BASE and CANDIDATE, git revisions of the repository that holds the model "
                       "(gradbench's own for built-in models), or two interpreters (--base-python, "
                       "--candidate-python). Each round measures every open case on both sides in fresh processes, in a "
                       "random order; a case is retired once its verdict is settled (from round 6) or a side failed "
                       "it; rounds go on until every case has its verdict or a limit is reached.")
    p.add_argument("base", nargs="?", metavar="BASE", help="the base revision (a commit, branch or tag; HEAD~1)")
    p.add_argument("candidate", nargs="?", metavar="CANDIDATE", help="the candidate revision (HEAD)")
    sides = p.add_argument_group("sides")
    sides.add_argument("--base-python", metavar="PATH", help="the base's Python interpreter (default: this one)")
    sides.add_argument("--candidate-python", metavar="PATH", help="the candidate's Python interpreter (default: this one)")
    sides.add_argument("--repo", metavar="PATH", help="the repository the revisions are of (default: the one holding "
                       "the user models' files, or the current folder for MODULE:FUNCTION models; gradbench's own "
                       "checkout for built-in models)")
    gate = p.add_argument_group("gate")
    gate.add_argument("--fail-above", type=argument(float, minimum=0), metavar="PCT", default=DEFAULT_FAIL_ABOVE,
                      help="the time gate: a case is slower when its whole 95%% interval lies above +PCT%%, no change "
                           "when inside +-PCT%%; exit 1 when a case is slower (default 5)")
    gate.add_argument("--fail-memory-above", type=argument(float, minimum=0), metavar="PCT", default=0.0,
                      help="the memory gate: exit 1 when the candidate's peak, held or saved bytes exceed the base's "
                           "by more than PCT%% (default 0: any byte)")
    gate.add_argument("--max-rounds", type=argument(int, minimum=6, maximum=1000), metavar="N",
                      default=DEFAULT_MAX_ROUNDS, help="stop after N rounds, settled or not (default 20; at least 6, "
                      "the fewest pairs with a 95%% interval)")
    gate.add_argument("--max-time", dest="ab_max_time", type=argument(float, above=0), metavar="SECONDS",
                      help="stop after the round that passes SECONDS (default: no limit but --max-rounds)")
    _add_grid(p)
    run = p.add_argument_group("trials")
    run.add_argument("--block-time", type=argument(float, above=0), metavar="SECONDS", default=0.02,
                     help="timing cap of one block, warm-up included; a block times at least 3 samples "
                          "(default 0.02)")
    run.add_argument("--alternations", type=argument(int, minimum=1, maximum=1000), metavar="M", default=3,
                     help="timed blocks per side per case in a round, alternating between the sides; the round's "
                          "ratio is the median of the M pairs' ratios (default 3)")
    run.add_argument("--timeout", type=argument(float, above=0), metavar="SECONDS",
                     help="seconds before a trial's worker is killed (default 600)")
    run.add_argument("--seed", type=INTEGER, help="weights and inputs (default 0)")
    run.add_argument("--out", help="JSONL file to append the trials to (default: results/ab/AB_ID.jsonl)")
    run.add_argument("--no-report", action="store_true", default=None, help="do not write the report")
    return p


def run(args) -> int:
    import random
    import time

    from ..ab import sides as ab_sides
    from ..ab.rounds import Limits, SideFailed, run_rounds
    from ..record import new_run_id
    from ..settings import DEFAULT_TIMEOUT_S, grid_cases, merged, number
    from ..storage import jsonl_out, opened_jsonl
    from ..text import terminal_text

    settings = merged(args)
    settings["max_time"] = args.block_time  # the full rounds' own timing, which the blocks replace: short
    _, cases = grid_cases(settings)
    sides = ab_sides.prepare(args.base, args.candidate, args.base_python, args.candidate_python,
                             [c.model for c in cases], args.repo)
    ab_id = new_run_id()
    out = jsonl_out(args.out, "ab", ab_id)
    limits = Limits(threshold=args.fail_above / 100, memory_threshold=args.fail_memory_above / 100,
                    max_rounds=args.max_rounds, max_time_s=args.ab_max_time,
                    timeout_s=number(settings, "timeout", default=DEFAULT_TIMEOUT_S), threads=number(settings, "threads"),
                    alternations=args.alternations, block_s=args.block_time)
    logs = os.path.join(os.path.dirname(os.path.abspath(out)), f"{ab_id}-logs")
    existed = os.path.exists(out)
    say = lambda text: print(terminal_text(text), flush=True)  # noqa: E731
    for path in ab_sides.uncommitted(sides, list(dict.fromkeys(c.model for c in cases))):
        say(f"note: {path} has uncommitted changes; they are in neither side (each side runs its revision)")
    say(f"gradbench ab {ab_id}: {len(cases)} cases; base = {sides[0].describe()}, candidate = {sides[1].describe()}; "
        f"gates: time +-{args.fail_above:g}%, memory +{args.fail_memory_above:g}%; at most {args.max_rounds} rounds")
    began = time.perf_counter()
    writer = opened_jsonl(out, then="run the comparison again")
    previous = _terminate_as_interrupt()
    try:
        os.makedirs(logs, exist_ok=True)
        with ab_sides.Checkouts(sides) as checked_out:
            done = run_rounds(cases, checked_out, limits, ab_id, writer.write, logs, say, random.Random(),
                              dict(ab_fail_above=args.fail_above, ab_fail_memory_above=args.fail_memory_above))
    except (SideFailed, KeyboardInterrupt) as exc:
        kept = f"the {writer.written} trials measured before it are in {out}" if writer.written else \
            "no trial was measured"
        if isinstance(exc, KeyboardInterrupt):
            print(f"\ninterrupted; {kept}; the worktrees are removed", file=sys.stderr)
            return 130
        print(f"gradbench: error: {terminal_text(exc)}; {kept}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        writer.close()
        if not writer.written and not existed:  # nothing measured: no empty results file left behind
            with contextlib.suppress(OSError):
                os.remove(out)
    return _print_verdicts(done, cases, out, args, time.perf_counter() - began)


def _terminate_as_interrupt():
    """SIGTERM (a cancelled CI job, a `kill`) stops the comparison as Ctrl-C does: worktrees removed, the
    trials kept. Returns the handler it replaced."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _print_verdicts(done, cases, out, args, wall_s: float) -> int:
    from ..ab import verdict as v
    from ..report.ab import gate, sides_text, verdict_rows, verdict_table
    from ..report.tables import render
    from ..results import load

    rows = verdict_rows(done["trials"], cases)
    print()
    for line in sides_text(done["trials"]):
        print(line)
    print(render(verdict_table(rows)))
    open_ = [label for label, verdict, _ in rows if verdict.time.verdict == v.INCONCLUSIVE]
    print(f"\n{done['rounds']} rounds, {len(done['trials'])} trials in {wall_s:.0f} s ({done['stopped']}); "
          f"trials: {out}")
    if open_:
        detectable = [verdict.time.detectable for _, verdict, _ in rows if verdict.time.detectable is not None]
        print(f"{len(open_)} inconclusive (interval straddles +-{args.fail_above:g}%; listed, never failed on): "
              + ", ".join(open_[:5]) + (" ..." if len(open_) > 5 else "")
              + (f"; this machine could detect slowdowns of {min(detectable):.0%} to {max(detectable):.0%} here, "
                 "more rounds (--max-rounds) narrow the intervals" if detectable else ""))
    status, verdict_line = gate(rows, args.fail_above)
    if not args.no_report:  # after the gate's status is known: a report that cannot be written does not hide it
        from ..errors import WriteFailed
        from ..report.document import write_report
        from ..runner import report_dir_for

        try:
            paths = write_report(load([out], warn=lambda m: None), report_dir_for(out), title=f"gradbench ab: {out}")
            print(f"report: {paths['html']}")
        except WriteFailed as exc:
            print(f"gradbench: warning: {exc}; the gate's status stands", file=sys.stderr)
    print(verdict_line)
    return status
