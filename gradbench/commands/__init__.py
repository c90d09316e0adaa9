"""One module per `gradbench` command, as asv lays out asv/commands/: each has ``add_parser(sub)``, which
declares its options, and ``run(args) -> int``, which calls the library and prints. cli.py assembles them.

Nothing is imported here that a command imports lazily, so that `gradbench --help` stays cheap.
"""
from __future__ import annotations

from . import ab, asv_machine, capacity, case, compare, env, explain, listing, predict, report, run, selfcheck

# in the order `gradbench --help` lists them
COMMANDS = {"run": run, "explain": explain, "list": listing, "env": env, "selfcheck": selfcheck,
            "report": report, "compare": compare, "ab": ab, "capacity": capacity, "predict": predict, "asv-machine": asv_machine, "case": case}
