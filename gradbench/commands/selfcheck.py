"""`gradbench selfcheck`: is this machine quiet enough to benchmark? (selfcheck.py)"""
from __future__ import annotations

from ..errors import BadInput
from ..settings import argument


def add_parser(sub):
    selfcheck = sub.add_parser("selfcheck", help="is this machine quiet enough to benchmark?")
    selfcheck.add_argument("--tolerance", type=argument(float, above=0), default=0.05,
                           help="warn where gradbench and torch.utils.benchmark differ by more (default 0.05)")
    selfcheck.add_argument("--grid", choices=("quick",), help="instead, compare on every case of the --quick sweep")
    selfcheck.add_argument("--device", help="check this device only: cpu, cuda or cuda:N (default: cpu, and cuda "
                           "where available)")
    return selfcheck


def run(args) -> int:
    from ..selfcheck import run_selfcheck

    if args.grid == "quick":
        if args.device is not None:
            raise BadInput("--device and --grid quick: the --quick sweep's cases are on cpu; give one of them")
        from ..selfcheck import grid_agreement
        from ..plan import QUICK, Grid

        return grid_agreement(Grid(**QUICK), args.tolerance)
    if args.device is not None:
        from ..case import Case

        try:
            Case(device=args.device).validate()
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    return run_selfcheck(tolerance=args.tolerance, devices=[args.device] if args.device else None)
