"""Predicted / measured memory, case by case, for the tables of docs/predict.md.

    python tools/predict_check.py MODEL[@SIZE][,MODEL...] BATCHES [AUTOCAST]     (EXTRA='{"seq_len": 32}')

Each case (every mode, both steps) is predicted on fake tensors, then measured in the same process; a line
per case with the ratios of peak, held and saved bytes (marked where one is off by more than 2%), then the
worst ratio per model. tools/predict_check_models.py holds the held-out models of the docs' second table."""
import json
import os
import sys

from gradbench.case import Case
from gradbench.modes import MODES
from gradbench.predict import predict
from gradbench.session import Session

FIELDS = ("peak_bytes", "held_bytes", "saved_bytes")


def main(argv: list[str]) -> int:
    models, batches = argv[0].split(","), [int(b) for b in argv[1].split(",")]
    autocast = argv[2] if len(argv) > 2 else "none"
    extra = json.loads(os.environ.get("EXTRA", "{}"))
    session, worst = Session(), {}
    for spec in models:
        model, _, size = spec.partition("@")  # a path may hold "/"
        for batch in batches:
            for mode in MODES:
                for step in ("forward", "train_step"):
                    case = Case(model=model, size=size or "small", batch_size=batch, mode=mode, step=step,
                                max_time_s=0.02, autocast=autocast, **extra).validate(here=False)
                    predicted, measured = predict(case), session.measure(case, timed=False)
                    name = f"{spec} b{batch} {mode} {step}"
                    if "ok" != predicted["status"] or "ok" != measured["status"]:
                        if predicted["status"] != "not_applicable":
                            print(f"{name}: predicted {predicted['status']} ({predicted.get('error')}), measured "
                                  f"{measured['status']}")
                        continue
                    ratios = [predicted[f] / measured[f] if measured[f] else float(predicted[f] == 0) or
                              float("inf") for f in FIELDS]
                    w = worst.setdefault(spec, [1.0] * 3)
                    worst[spec] = [r if abs(r - 1) > abs(x - 1) else x for r, x in zip(ratios, w)]
                    off = "" if all(abs(r - 1) <= 0.02 for r in ratios) else "  <- off by more than 2%"
                    print(f"{name}: " + " ".join(f"{r:.4f}" for r in ratios) + off, flush=True)
    for spec, w in worst.items():
        print(f"worst {spec}: peak {w[0]:.4f}, held {w[1]:.4f}, saved {w[2]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
