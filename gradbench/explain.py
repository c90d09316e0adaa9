"""`gradbench explain`: every mode measured on one workload per model, in this process. Showing it (the
behaviour table, with what failed, what is untrusted and what the model's code changed) is
report/explain.py's job."""
from __future__ import annotations

import sys

from .errors import BadInput

OMITTED = ("batch_size", "device", "dtype", "compile", "autocast", "mode", "step")  # the progress line: model/size s128


def measure_modes(models: list[str], size: str, batch_size: int, device: str, dtype: str, max_time_s: float,
                  cudnn_benchmark: bool, compile: str = "none", autocast: str = "none",
                  head: str | None = None, seq_len: int | None = None,
                  image_size: int | None = None) -> dict[str, list[dict]]:
    """Each model's forward in every mode -> {model: records}; BadInput for a bad value or a model that
    cannot be imported or built. Under ``compile`` the modes share one compiled model, in MODES order."""
    from .case import Case
    from .modes import MODES
    from .record import case_label
    from .session import Session
    from .settings import check_user_models

    try:
        cases_by_model = {model: [Case(model, size, batch_size, device, dtype, mode, "forward",
                                       max_time_s=max_time_s, cudnn_benchmark=cudnn_benchmark, compile=compile,
                                       autocast=autocast, head=head, seq_len=seq_len,
                                       image_size=image_size).validate()
                                  for mode in MODES] for model in models}
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    check_user_models(models)
    output, session = {}, Session()
    for model, cases in cases_by_model.items():
        slow = " (compiling: tens of seconds per mode on a CPU)" if compile != "none" else ""
        print(f"gradbench: measuring {len(cases)} modes of {case_label(cases[0].identity(), omit=OMITTED)}{slow} "
              "...", file=sys.stderr)
        try:
            session.workload(cases[0])
        except Exception as exc:  # a model that cannot be built here (a bad factory, no memory for the batch)
            raise BadInput(str(exc) if isinstance(exc, ValueError) else f"cannot build {model}/{size} with batch "
                           f"{batch_size}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        output[model] = [session.measure(c) for c in cases]
    session.release()
    return output
