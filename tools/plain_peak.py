#!/usr/bin/env python3
"""The peak memory of chosen cases, measured by plain code apart from gradbench's pipeline: the
cross-check of the record's peak_bytes that tools/gpu-check runs.

Only the model and its input batch come from gradbench (build_model and input_batch, same seed: the
same weights and batch). The mode is applied here as the Modes table (README, docs/modes.md) defines
it, the step is written out here, and the peak is read here: on CUDA from torch.cuda's allocator
statistics around a second step (the first one primes); on CPU (tools/gpu-check --dry-run) from the
CPU allocator's events that torch.profiler records, summed here. Prints progress on stdout; writes one JSON object per case, with
plain_peak_bytes, or plain_error where plain code could not run the case.

  tools/plain_peak.py --results FILE.jsonl --out PEAKS.jsonl [--limit N]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # an uninstalled checkout

import torch  # noqa: E402
from torch import nn  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# mode: (model.training, grad mode, parameters that require grad), the Modes table (README, docs/modes.md)
MODES = {
    "train": (True, "enabled", "all"), "eval": (False, "enabled", "all"), "no_grad": (True, "no_grad", "all"),
    "eval_no_grad": (False, "no_grad", "all"), "frozen": (True, "enabled", "none"),
    "frozen_eval": (False, "enabled", "none"), "inference_mode": (True, "inference_mode", "all"),
    "eval_inference_mode": (False, "inference_mode", "all"), "finetune_head": (True, "enabled", "head"),
    "as_built": (None, "enabled", "as_built"),  # None, as_built: the factory's flags and requires_grad untouched
}


def grad_scope(grad_mode: str):
    return {"enabled": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[grad_mode]()


def apply(model: nn.Module, mode: str, head: str | None = None) -> str:
    """``head``: the module finetune_head trained, as its record names it (default: the last Linear)."""
    training, grad_mode, trainable = MODES[mode]
    if training is not None:
        model.train(training)
    if trainable == "as_built":
        return grad_mode
    module = dict(model.named_modules())[head] if head else \
        [m for m in model.modules() if isinstance(m, nn.Linear)][-1] if trainable == "head" else None
    head_ids = {id(p) for p in module.parameters()} if module is not None else set()
    for p in model.parameters():
        p.requires_grad_(trainable == "all" or id(p) in head_ids)
    return grad_mode


def loss_of(out) -> torch.Tensor:
    values = out.values() if isinstance(out, dict) else [out] if isinstance(out, torch.Tensor) else out
    tensors = [t for t in values if isinstance(t, torch.Tensor)]
    return sum(t.float().pow(2).mean() for t in tensors if t.is_floating_point())


def make_steps(model: nn.Module, inputs, mode: str, step: str, head: str | None = None, loss=None):
    """(step, settle): the step as a user writes it; settle drops the gradients a train step leaves.
    ``inputs``: gradbench's InputBatch (args, kwargs, batch); ``loss(output, batch)``: the family's, if any."""
    grad_mode = apply(model, mode, head)
    if step not in ("forward", "train_step"):
        raise ValueError(f"unknown step {step!r}; valid steps: forward, train_step")
    if step == "forward":
        def forward():
            with grad_scope(grad_mode):
                model(*inputs.args, **inputs.kwargs)
        return forward, lambda: None
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train_step():
        # The output is not kept past the loss (gradbench's step keeps it no longer): held through the backward,
        # a cross-entropy model's logits, which the loss does not save, would add their bytes to the peak.
        with grad_scope(grad_mode):
            optimizer.zero_grad(set_to_none=True)
            value = (loss_of if loss is None else lambda out: loss(out, inputs.batch))(
                model(*inputs.args, **inputs.kwargs))
            value.backward()
            optimizer.step()
    return train_step, lambda: optimizer.zero_grad(set_to_none=True)


def cuda_peak(step, settle, device) -> tuple[int, int]:
    """(allocated peak above the baseline, requested peak above it), the cache emptied first as gradbench does."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    step()
    settle()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    requested = torch.cuda.memory_stats(device)["requested_bytes.all.current"]
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before,
            torch.cuda.memory_stats(device)["requested_bytes.all.peak"] - requested)


def cpu_peak(step, settle) -> tuple[int, None]:
    from gradbench.measure.memory import stderr_silenced  # Kineto's start/stop lines, not the measurement

    settle()
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    with stderr_silenced():
        prof.__enter__()
    try:
        step()
        settle()
        with torch.profiler.record_function("plain_peak::step"):
            step()
    finally:
        with stderr_silenced():
            prof.__exit__(None, None, None)
    events = prof.profiler.kineto_results.events()
    [mark] = [e for e in events if e.name() == "plain_peak::step"]
    memory = sorted((e for e in events if e.name() == "[memory]" and e.device_type().name == "CPU"),
                    key=lambda e: e.start_ns())
    total = sum(e.nbytes() for e in memory if e.start_ns() < mark.start_ns())
    base = peak = total
    for e in memory:
        if mark.start_ns() <= e.start_ns() <= mark.end_ns():
            total += e.nbytes()
            peak = max(peak, total)
    return peak - base, None


WORKLOAD = ("model", "size", "batch_size", "seq_len", "image_size", "device", "dtype", "seed")
_built: dict[tuple, tuple] = {}  # the last workload's (model, inputs, loss): a zoo model takes seconds to build


def workload(case: dict):
    """(model, inputs, loss) of the case's model, size, input and device, built once for the cases that share
    them, and put back as built before each case: training flags and requires_grad (what mode as_built leaves
    alone), no gradient. Weights and buffers an earlier train step changed stay changed: they weigh the same."""
    from gradbench.models import build_model, input_batch

    key = tuple(case.get(k) for k in WORKLOAD)
    if key not in _built:
        _built.clear()
        device, dtype, seed = torch.device(case["device"]), DTYPES[case["dtype"]], case.get("seed") or 0
        built = build_model(case["model"], case["size"], seed, seq_len=case.get("seq_len"),
                            image_size=case.get("image_size"))
        model = built.model.to(device=device, dtype=dtype)
        _built[key] = (model, input_batch(built.make_input, case["batch_size"], device, dtype, seed), built.loss,
                       [(m, m.training) for m in model.modules()], [(p, p.requires_grad) for p in model.parameters()])
    model, inputs, loss, training, requires_grad = _built[key]
    for m, flag in training:
        m.training = flag
    for p, flag in requires_grad:
        p.requires_grad_(flag)
        p.grad = None
    return model, inputs, loss


def measure(case: dict) -> tuple[int, int | None]:
    model, inputs, loss = workload(case)
    step, settle = make_steps(model, inputs, case["mode"], case["step"], case.get("head_module"), loss)
    device = torch.device(case["device"])
    return cuda_peak(step, settle, device) if device.type == "cuda" else cpu_peak(step, settle)


def chosen(records: list[dict], limit: int) -> list[dict]:
    """Ok eager cases of the file, up to ``limit``: whole workloads (every mode and step of one model,
    size, batch and dtype), taken from each model in turn so that every model is checked."""
    keys = ("model", "size", "batch_size", "seq_len", "image_size", "device", "dtype", "mode", "step", "seed")
    workloads: dict[tuple, dict[tuple, dict]] = {}
    for r in records:
        if r.get("status") != "ok" or r.get("compile") not in (None, "none") or r.get("autocast") not in (None, "none"):
            continue
        case = {k: r.get(k) for k in keys}
        workloads.setdefault(tuple(case[k] for k in keys[:7]), {})[tuple(case.values())] = \
            {**case, "head_module": r.get("head_module")}
    by_model: dict[str, list] = {}
    for key, cases in workloads.items():
        by_model.setdefault(key[0], []).append(list(cases.values()))
    out = []
    for turn in itertools.zip_longest(*by_model.values()):
        for cases in turn:
            if cases and len(out) + len(cases) <= limit:
                out += cases
    if not out and workloads:  # a limit smaller than one workload: that many of the first one's cases
        out = list(next(iter(workloads.values())).values())[:limit]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=72, help="cases at most (default 72)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        return refuse(f"bad --limit {args.limit}; it must be >= 1")
    try:
        with open(args.results) as f:
            lines = f.readlines()
    except OSError as exc:
        return refuse(f"cannot read --results {args.results!r}: {exc.strerror}")
    records = []
    for line in lines:  # a line cut short by a kill, or not an object, is skipped, as gradbench's reader does
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    cases = chosen(records, args.limit)
    try:
        out = open(args.out, "w")
    except OSError as exc:
        return refuse(f"cannot write --out {args.out!r}: {exc.strerror}")
    with out:
        for i, case in enumerate(cases, 1):
            try:
                case["plain_peak_bytes"], case["plain_requested_peak_bytes"] = measure(case)
            except Exception as exc:  # a case plain code cannot run is reported, not hidden
                case["plain_error"] = f"{type(exc).__name__}: {exc}"
            out.write(json.dumps(case) + "\n")
            out.flush()
            print(f"[{i}/{len(cases)}] {case}", flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return 0


def refuse(message: str) -> int:
    print(f"plain_peak: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
