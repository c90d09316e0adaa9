"""`gradbench env`: the machine fingerprint stored with every record (env.py)."""
from __future__ import annotations

import json


def add_parser(sub):
    env = sub.add_parser("env", help="the machine fingerprint stored with every record")
    env.add_argument("--json", action="store_true", help="print it as one JSON object")
    return env


def run(args) -> int:
    import torch

    from ..env import fingerprint

    info = {**fingerprint(), "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for key, value in info.items():
            print(f"{key:18s} {value}")
    return 0
