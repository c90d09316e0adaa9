"""`gradbench explain`: every mode measured on one workload per model, in this process, and shown as
the behaviour table (what each mode really switched) with what failed, what is untrusted and what the
model's code changed."""
from __future__ import annotations

import sys

from .errors import BadInput


def measure_modes(models: list[str], size: str, batch_size: int, device: str, dtype: str, max_time_s: float,
                  cudnn_benchmark: bool, compile: str = "none", autocast: str = "none",
                  head: str | None = None) -> dict[str, list[dict]]:
    """Each model's forward in every mode -> {model: records}; BadInput for a bad value or a model that
    cannot be imported or built. Under ``compile`` the modes share one compiled model, in MODES order."""
    from .case import Case
    from .modes import MODES
    from .pipeline import measure_case
    from .settings import check_user_models
    from .workload import Workload

    try:
        cases_by_model = {model: [Case(model, size, batch_size, device, dtype, mode, "forward",
                                       max_time_s=max_time_s, cudnn_benchmark=cudnn_benchmark, compile=compile,
                                       autocast=autocast, head=head).validate()
                                  for mode in MODES] for model in models}
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    check_user_models(models)
    output = {}
    for model, cases in cases_by_model.items():
        slow = " (compiling: tens of seconds per mode on a CPU)" if compile != "none" else ""
        print(f"gradbench: measuring {len(cases)} modes of {model}/{size}{slow} ...", file=sys.stderr)
        try:
            workload = Workload(*cases[0].workload_key)
        except Exception as exc:  # a model that cannot be built here (a bad factory, no memory for the batch)
            raise BadInput(str(exc) if isinstance(exc, ValueError) else f"cannot build {model}/{size} with batch "
                           f"{batch_size}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        output[model] = [measure_case(c, workload) for c in cases]
    return output


def print_explanation(output: dict[str, list[dict]], fmt: str) -> None:
    """``fmt``: table or markdown."""
    from .record import case_label
    from .report.tables import UNTRUSTED_LEGEND, behaviour_table, markdown_text, render

    for model, records in output.items():
        r = records[0]
        title = f"{case_label(r, omit=('mode', 'step'))} ({r['params']:,} parameters; torch {r['torch']}, " \
                f"{r['threads']} threads)"
        print(f"\n## {markdown_text(title)}\n" if fmt == "markdown" else f"\n{title}")
        print(render(behaviour_table(records), fmt))
        failed = [f"{x['mode']}: {x['error']}" for x in records if x["status"] not in ("ok", "not_applicable")]
        doubted = [f"{x['mode']}: timing untrusted: {x['time_distrust']}" for x in records
                   if x["status"] == "ok" and x.get("time_trusted") is False]
        warned = dict.fromkeys(x["global_state_warning"] for x in records if x["global_state_warning"])
        overrides = [x["mode_overrides"] for x in records if x.get("mode_overrides")]
        heads = {x["head_module"] for x in records if x.get("head_module")}
        compiled = [f"{x['mode']}: {x['recompiles']} recompilation(s), first call {x['compile_time_s']:.2f} s "
                    f"longer than a step{_first_reason(x)}" for x in records
                    if x["status"] == "ok" and x.get("compile_time_s") is not None]
        if compiled:
            print("  torch.compile, modes in this order on one compiled model:")
            print("\n".join(f"    {line}" for line in compiled))
        for line in [*failed, *doubted, *warned]:
            print(f"  ! {markdown_text(line) if fmt == 'markdown' else line}")
        for head in heads:
            print(f"  finetune_head trained {markdown_text(head) if fmt == 'markdown' else head!r}")
        if overrides:
            print("  the modes overrode how the model was built (mode as_built measures it as built):")
            print("\n".join(f"    {markdown_text(line) if fmt == 'markdown' else line}" for line in overrides))
        if doubted:
            print(f"  {UNTRUSTED_LEGEND}")


def _first_reason(record: dict) -> str:
    """The switches whose guards failed, named as the report names them."""
    from .report.compiled import guard_kinds

    kinds = guard_kinds(record.get("recompile_reasons"))
    return f" (guards on {', '.join(kinds)})" if kinds else ""
