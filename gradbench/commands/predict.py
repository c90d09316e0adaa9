"""`gradbench predict`: each case's held, peak and saved bytes computed on fake tensors, without allocating
(predict.py), set against GPUs (gpu_table.py) or a budget; with --verify, measured here where it runs and set
beside the prediction."""
from __future__ import annotations

import sys
import time

from ..errors import BadInput
from .run import _add_grid


def add_parser(sub):
    from ..gpu_table import GPUS

    p = sub.add_parser("predict", help="predict every case's memory without running it (fake tensors), against "
                       "GPUs or a budget; --verify measures what runs here beside it",
                       description="Run each case's step on fake tensors (shapes and dtypes, no storage), through "
                       "the same passes a measurement runs, and replay its allocations: held, peak and saved bytes, "
                       "with no GPU and no allocation. A case the fake tensors cannot follow is 'unpredictable', "
                       "with the reason: measure it instead.")
    _add_grid(p)
    for action in p._actions:  # run's options that mean something else here
        if action.dest == "devices":
            action.help = "cpu cuda (default: cpu; cuda with --gpu); cuda needs no GPU here"
        elif action.dest == "memory_budget":
            action.help = "512MiB, 8GiB, 24GB or bytes: set each case against this budget (beside any --gpu)"
        elif action.dest == "threads":
            action.help = "torch threads of this process: --verify's measurements and the probes of CPU kernels " \
                          "(default: torch's choice)"
    p.add_argument("--gpu", nargs="+", metavar="NAME", help=f"set each case against these GPUs' memory (as torch "
                   f"reports it): {', '.join(GPUS)}, or the start of one's name (h100); implies --devices cuda")
    p.add_argument("--max-batch", action="store_true", default=None,
                   help="also find, on predictions alone, the largest batch of each case that fits each --gpu and "
                        "--memory-budget (B fits, B + 1 does not; a few more predictions per case and target)")
    p.add_argument("--verify", action="store_true", default=None,
                   help="also measure every case that can run on this machine and print predicted / measured")
    p.add_argument("--out", help="JSONL file to append the predictions to (default: results/predict/RUN_ID.jsonl)")
    return p


def run(args) -> int:
    from ..capacity import parse_size
    from ..gpu_table import gpu
    from ..predict import Predictor
    from ..record import Record, case_label, new_run_id
    from ..settings import grid_cases, merged, number
    from ..storage import jsonl_out, opened_jsonl
    from ..text import terminal_text

    settings = merged(args)
    if args.max_batch and not (args.gpu or args.memory_budget is not None):
        raise BadInput("--max-batch needs a target: give --gpu NAME or --memory-budget SIZE")
    targets = []
    for name in args.gpu or ():
        try:
            known = gpu(name)
            targets.append((known.name, known.memory_bytes))
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    if args.memory_budget is not None:
        try:
            targets.append(("budget", parse_size(args.memory_budget)))
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    if args.gpu and "devices" not in settings:
        settings["devices"] = ["cuda"]
    if args.gpu and any(not str(d).startswith("cuda") for d in settings["devices"]):
        raise BadInput(f"--gpu sets cuda cases against a GPU's memory, and --devices names "
                       f"{', '.join(d for d in settings['devices'] if not str(d).startswith('cuda'))}; give "
                       "--devices cuda (the default with --gpu), or --memory-budget for a CPU's")
    settings.setdefault("devices", ["cpu"])
    threads = number(settings, "threads")  # BadInput names a bad one
    if threads:  # one process here: its threads are the measurements' (a worker's, in a run)
        import torch

        torch.set_num_threads(threads)
    settings.pop("memory_budget", None)  # a target here, not run's refusal of cases that cannot fit
    settings["max_time"] = 0.05  # --verify's measurements: their memory is what is compared
    _, cases = grid_cases(settings, here=False)
    run_id = new_run_id()
    out = jsonl_out(args.out, "predict", run_id)
    writer = opened_jsonl(out, then="predict again")
    predictor = Predictor(run_id)
    session = None
    rows = []
    began = time.perf_counter()
    try:
        for i, case in enumerate(cases, 1):
            t = time.perf_counter()
            predicted = predictor.predict(case)
            writer.write(Record(predicted))
            measured = None
            # --verify measures what was predicted, and in place of a prediction what could not be (not without
            # it: an unpredictable case may be large, and this machine's memory is not a budget)
            if args.verify and predicted["status"] in ("ok", "unpredictable") and _runs_here(case.device):
                session = session or _verifier(run_id)
                measured = session.measure(case)
                writer.write(measured)
            rows.append((case, predicted, measured))
            print(terminal_text(f"[{i}/{len(cases)}] {case_label(case.identity())}: {_said(predicted)} "
                                f"({time.perf_counter() - t:.1f} s)"), flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the {writer.written} records written are in {out}", file=sys.stderr)
        return 130
    finally:
        writer.close()
    print()
    print(_table(rows, targets, args.verify))
    print(f"\n{len(cases)} cases predicted in {time.perf_counter() - began:.0f} s; records: {out}")
    if args.max_batch:
        print()
        print(_largest_batches(rows, targets, predictor))
    for case, p, m in rows:
        if p["status"] not in ("ok", "not_applicable"):
            then = f"; measured instead: {_said(m)}" if m is not None else \
                "; measure it (gradbench run, or --verify here)" if p["status"] == "unpredictable" else ""
            print(terminal_text(f"{case_label(case.identity())}: {p['status']}: {p.get('error')}{then}"))
    return 0


def _largest_batches(rows, targets, predictor) -> str:
    """Per case (every axis but the batch) and target: the largest batch whose predicted need (held + peak)
    fits, found as capacity finds it (capacity.find_capacity), on predictions instead of measurements."""
    import pandas as pd

    from ..capacity import _search, predicted_needs
    from ..record import case_label
    from ..text import first_line
    from ..report.tables import render

    lines, seen = [], set()
    for case, p, _ in rows:
        key = (case.model, case.size, case.device, case.dtype, case.mode, case.step, case.seq_len, case.image_size,
               case.autocast, case.seed)
        if p["status"] != "ok" or key in seen:
            continue
        seen.add(key)
        row = {"case": case_label(case.identity(), omit=("batch_size",))}
        for name, budget in targets:
            needed = predicted_needs(case.model, case.size, case.device, case.dtype, case.mode, case.step,
                                     case.seed, case.seq_len, case.image_size, predictor, case.autocast)
            try:
                found, _ = _search(needed, budget)
                row[f"{name}: max batch"] = ("none fits" if found.max_batch_size == 0 else
                                             f"{found.max_batch_size:,}" + (" (capped)" if found.capped else ""))
            except Exception as exc:  # noqa: BLE001 - unpredictable at some batch: said, the others go on
                row[f"{name}: max batch"] = f"not predicted: {first_line(exc, 60)}"
        lines.append(row)
    return render(pd.DataFrame(lines).set_index("case")) if lines else "(no case predicted)"


def _verifier(run_id: str):
    from ..session import Session

    return Session(run_id)


def _runs_here(device: str) -> bool:
    from ..case import validate_device

    try:
        validate_device(device)
    except ValueError:
        return False
    return True


def _said(record: dict) -> str:
    from ..units import human_bytes

    if record["status"] != "ok":
        return f"{record['status']}: {record.get('error')}"
    return (f"held {human_bytes(record['held_bytes'])}, peak {human_bytes(record['peak_bytes'])}, "
            f"saved {human_bytes(record['saved_bytes'])}")


def _table(rows, targets, verify: bool) -> str:
    """One row per case: the predicted bytes, what the case needs (held + peak, capacity's rule), each target's
    margin, and with --verify the ratios predicted / measured."""
    import pandas as pd

    from ..record import case_label
    from ..report.tables import render
    from ..units import human_bytes

    lines = []
    for case, p, m in rows:
        row = {"case": case_label(case.identity())}
        if p["status"] != "ok":  # the reason is printed below the table
            row["held"] = p["status"]
            if m is not None and m["status"] == "ok":  # measured instead: its figures, marked
                row.update(held=f"{p['status']}; measured {human_bytes(m['held_bytes'])}",
                           peak=human_bytes(m["peak_bytes"]), saved=human_bytes(m["saved_bytes"]),
                           needs=human_bytes(m["held_bytes"] + m["peak_bytes"]))
            lines.append(row)
            continue
        needs = p["held_bytes"] + p["peak_bytes"]
        row.update(held=human_bytes(p["held_bytes"]), peak=human_bytes(p["peak_bytes"]),
                   saved=human_bytes(p["saved_bytes"]), needs=human_bytes(needs))
        for name, budget in targets:
            margin = budget - needs
            row[name] = f"fits, margin {human_bytes(margin)}" if margin >= 0 else f"no, short by {human_bytes(-margin)}"
        if verify:
            if m is None:
                row["peak pred/meas"] = "not run here"
            elif m["status"] != "ok":
                row["peak pred/meas"] = f"measured: {m['status']}"
            else:
                for field, title in (("peak_bytes", "peak pred/meas"), ("held_bytes", "held pred/meas"),
                                     ("saved_bytes", "saved pred/meas")):
                    row[title] = _ratio(p[field], m[field])
        lines.append(row)
    return render(pd.DataFrame(lines).set_index("case").fillna(""))


def _ratio(predicted: int, measured: int) -> str:
    from ..report.predictions import ratio

    found = ratio(predicted, measured)
    if found is None:  # only the measurement is 0
        return f"{predicted:,} B / 0"
    return "1.000 (both 0)" if measured == 0 else f"{found:.3f}"
