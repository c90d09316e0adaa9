"""`gradbench capacity`: the largest batch each mode fits in a memory budget, measured (capacity.py)."""
from __future__ import annotations

import json
import os
import sys

from ..errors import BadInput
from ..record import finite_or_none
from ..settings import list_arg
from .arguments import SECONDS, add_input_axes


def add_parser(sub):
    capacity = sub.add_parser("capacity", help="the largest batch each mode fits in a memory budget, measured")
    capacity.add_argument("--models", nargs="+", default=["transformer"], help="default: transformer")
    capacity.add_argument("--sizes", nargs="+", help="each model takes those it offers, as in run (default: small; a "
                          "zoo family its first size)")
    capacity.add_argument("--modes", nargs="+", default=["train", "eval", "no_grad", "eval_no_grad", "frozen"],
                          help="mode names, or 'all' (default: the five core modes)")
    capacity.add_argument("--steps", nargs="+", default=["forward"], help="forward train_step (default: forward)")
    capacity.add_argument("--devices", nargs="+", default=["cpu"], help="cpu cuda (default: cpu)")
    capacity.add_argument("--dtypes", nargs="+", default=["float32"], help="default: float32")
    add_input_axes(capacity)
    capacity.add_argument("--memory-budget", metavar="SIZE", help="512MiB, 8GiB, 24GB or bytes; required on "
                          "cpu; on cuda the default is the device's free memory at start")
    capacity.add_argument("--time", action="store_true", help="also measure samples per second at the largest batch")
    capacity.add_argument("--max-time", type=SECONDS, default=2.0, help="with --time: seconds of timing per case "
                          "(default 2; a step at a large batch can take a second)")
    capacity.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    capacity.add_argument("--out", metavar="FILE.jsonl", help="also append the record of every batch measured "
                          "(gradbench report draws them: memory against batch, the budget, each mode's answer)")
    return capacity


def run(args) -> int:
    """The largest batch each mode fits in a memory budget, measured (gradbench/capacity.py)."""
    from ..capacity import capacity_table, default_budget, measure_capacities, parse_size
    from ..case import Case
    from ..models import FAMILIES, TOY_FAMILIES, validate_model_name
    from ..modes import MODES
    from ..report.tables import render
    from ..settings import check_user_models

    from ..plan import Grid

    sizes_given = args.sizes is not None
    args.sizes = args.sizes if sizes_given else ["small"]
    for name in ("models", "sizes", "modes", "steps", "devices", "dtypes"):  # commas or spaces, as in run
        setattr(args, name, list_arg(getattr(args, name)))
        if not getattr(args, name):
            raise BadInput(f"--{name} is empty")
    modes = list(MODES) if args.modes == ["all"] else args.modes
    # sizes and input axes per model, by the run grid's rules (--sizes 50 base: resnet 50, bert base)
    grid = Grid(models=tuple(args.models), sizes=tuple(args.sizes) if sizes_given else None,
                seq_lens=(args.seq_len,) if args.seq_len else (),
                image_sizes=(args.image_size,) if args.image_size else ())
    try:
        for m in args.models:
            validate_model_name(m)
        grid.check()
        workloads = [(m, s, *axes) for m in args.models
                     for s in (grid.sizes_for(m) if sizes_given or m in FAMILIES and FAMILIES[m] not in TOY_FAMILIES
                               else ("small",))
                     for axes in grid.inputs_for(m)]
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    combos = [(m, s, d, t, mode, step, seq_len, image_size) for m, s, seq_len, image_size in workloads
              for d in args.devices for t in args.dtypes for step in args.steps for mode in modes]
    try:
        for m, s, d, t, mode, step, seq_len, image_size in combos:
            Case(m, s, 1, d, t, mode, step, seq_len=seq_len, image_size=image_size).validate()
        budgets = {d: parse_size(args.memory_budget) if args.memory_budget is not None else default_budget(d)
                   for d in args.devices}
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.out is not None and (not args.out or os.path.isdir(args.out)):
        raise BadInput(f"--out {args.out!r} is not a file name; give a JSONL file to append the records to")
    check_user_models(args.models)
    rows, written = measure_capacities(combos, budgets, args.time, args.max_time, out=args.out)
    if args.out:
        print(f"gradbench: {written} records appended to {args.out} (gradbench report reads them)", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(finite_or_none(rows), indent=1, allow_nan=False))
    else:
        print(render(capacity_table(rows), "markdown" if args.format == "markdown" else "table"))
    return 0
