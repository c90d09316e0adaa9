"""`gradbench asv-machine`: name this machine for asv by its GPU, with the GPU fields asv lacks (env.py)."""
from __future__ import annotations

import os


def add_parser(sub):
    machine = sub.add_parser("asv-machine", help="name this machine for asv by its GPU, recording GPU, "
                             "driver, CUDA and torch in asv's machine file")
    machine.add_argument("--machine", help="the name (default: HOST-GPU, or HOST-cpu)")
    machine.add_argument("--file", default="~/.asv-machine.json", help="asv's machine file (default: %(default)s)")
    return machine


def run(args) -> int:
    """Write this machine into asv's machine file, named by its GPU, with the GPU fields asv lacks."""
    from ..env import default_asv_machine_name, update_asv_machine_file

    path, name = os.path.expanduser(args.file), args.machine or default_asv_machine_name()
    update_asv_machine_file(path, name)
    print(f"asv machine {name!r} written to {path}; run: asv run --machine {name}")
    return 0
