"""`gradbench explain`: the measured behaviour of every mode on your model and machine (explain.py)."""
from __future__ import annotations

import json

from ..errors import BadInput
from ..record import finite_or_none
from ..settings import argument, list_arg
from .arguments import SECONDS, add_head, add_input_axes


def add_parser(sub):
    explain = sub.add_parser("explain", help="the measured behaviour of every mode on your model and machine")
    explain.add_argument("--models", nargs="+", help="default: mlp transformer")
    explain.add_argument("--size", default="small")
    explain.add_argument("--batch-size", type=argument(int, minimum=1), default=32)
    add_input_axes(explain)
    explain.add_argument("--device", default="cpu")
    explain.add_argument("--dtype", default="float32")
    explain.add_argument("--max-time", type=SECONDS, default=0.3, help="seconds of timing per mode (default 0.3)")
    explain.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    explain.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark on (CUDA)")
    explain.add_argument("--compile", default="none", help="torch.compile mode: none default max-autotune "
                         "reduce-overhead (cuda) (default: none)")
    explain.add_argument("--autocast", default="none", help="autocast dtype: none bfloat16 float16 (cuda) "
                         "(default: none)")
    add_head(explain)
    return explain


def run(args) -> int:
    from ..explain import measure_modes
    from ..report.explain import print_explanation

    models = list_arg(args.models)
    if models == []:
        raise BadInput("--models is empty; name built-in models (mlp cnn transformer) or MODULE:FUNCTION")
    output = measure_modes(models or ["mlp", "transformer"], args.size, args.batch_size, args.device, args.dtype,
                           args.max_time, args.cudnn_benchmark, args.compile, args.autocast, args.head,
                           seq_len=args.seq_len, image_size=args.image_size)
    if args.format == "json":
        print(json.dumps(finite_or_none(output), indent=1, allow_nan=False))
    else:
        print_explanation(output, args.format)
    return 0
