"""What `gradbench explain` prints: per model, the behaviour table of every mode (what each really
switched), then what failed, what is untrusted, what torch.compile recompiled and what the model's code
changed. The measuring is explain.py's."""
from __future__ import annotations

from ..record import case_label
from .compilation import guard_kinds
from .tables import UNTRUSTED_LEGEND, behaviour_table, markdown_text, render


def print_explanation(output: dict[str, list[dict]], fmt: str) -> None:
    """``fmt``: table or markdown."""
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
    kinds = guard_kinds(record.get("recompile_reasons"))
    return f" (guards on {', '.join(kinds)})" if kinds else ""
