"""`gradbench case`: measure one case and print its record as JSON (pipeline.py)."""
from __future__ import annotations

import json

from ..errors import BadInput
from ..record import finite_or_none
from ..settings import argument
from .arguments import SECONDS, add_head, add_input_axes


def add_parser(sub):
    case = sub.add_parser("case", help="measure one case and print its record as JSON")
    case.add_argument("--model", default="mlp")
    case.add_argument("--size", default="small")
    case.add_argument("--batch-size", type=argument(int, minimum=1), default=32)
    add_input_axes(case)
    case.add_argument("--device", default="cpu")
    case.add_argument("--dtype", default="float32")
    case.add_argument("--mode", default="eval_no_grad")
    case.add_argument("--step", default="forward")
    case.add_argument("--max-time", type=SECONDS, default=2.0, help="seconds of timing (default 2)")
    case.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark on (CUDA)")
    case.add_argument("--compile", default="none", help="none default max-autotune reduce-overhead (cuda)")
    case.add_argument("--autocast", default="none", help="none bfloat16 float16 (cuda)")
    case.add_argument("--compile-cold", action="store_true", help="reset the compiler's caches first")
    add_head(case)
    case.add_argument("--energy-sampling", action="store_true", help="cuda: time until the energy counter has "
                      "updated 10 times, so that energy_j is measured")
    return case


def run(args) -> int:
    from ..session import run_case

    try:
        record = run_case(model=args.model, size=args.size, batch_size=args.batch_size, device=args.device,
                          dtype=args.dtype, mode=args.mode, step=args.step, max_time_s=args.max_time,
                          cudnn_benchmark=args.cudnn_benchmark, compile=args.compile, autocast=args.autocast,
                          compile_cold=args.compile_cold, energy_sampling=args.energy_sampling, head=args.head,
                          seq_len=args.seq_len, image_size=args.image_size)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(finite_or_none(record), indent=1, allow_nan=False))
    return 0
