#!/usr/bin/env python3
"""Checks gradbench's plain-torch ResNet and ViT (gradbench/zoo/vision.py) against torchvision itself, in an
environment that has torchvision (gradbench's own does not need it). Per model: state_dict keys, order and
shapes identical; the same seed builds the same weights; torchvision's weights load into ours with
strict=True (and ours into torchvision's), and then both give the same output in eval() and in train()
mode, and the same gradients. Prints one verdict line per model; exits 1 if any differs.

  python tools/zoo_against_torchvision.py [resnet18 resnet50 vit_b_16 ...]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # an uninstalled checkout

import torch  # noqa: E402
import torchvision  # noqa: E402

from gradbench.zoo.vision import resnet, vit  # noqa: E402

OURS = {"resnet18": (resnet, "18"), "resnet34": (resnet, "34"), "resnet50": (resnet, "50"),
        "resnet101": (resnet, "101"), "resnet152": (resnet, "152"), "vit_b_16": (vit, "b_16"),
        "vit_l_16": (vit, "l_16")}
DEFAULT = ("resnet18", "resnet50", "vit_b_16")
IMAGE_SIZE = 224
BATCH = 2
SEED = 0


def max_diff(a, b) -> float:
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))


def check(name: str) -> tuple[bool, str]:
    builder, size = OURS[name]
    torch.manual_seed(SEED)
    theirs = getattr(torchvision.models, name)()
    torch.manual_seed(SEED)
    built = builder(size, image_size=IMAGE_SIZE)
    ours = built.model
    their_sd, our_sd = theirs.state_dict(), ours.state_dict()
    layout = [(k, tuple(v.shape)) for k, v in their_sd.items()] == [(k, tuple(v.shape)) for k, v in our_sd.items()]
    if not layout:
        only = sorted(set(their_sd) ^ set(our_sd))[:3]
        return False, f"state_dict layout differs ({len(their_sd)} vs {len(our_sd)} entries; e.g. {only})"
    same_init = all(torch.equal(their_sd[k], our_sd[k]) for k in their_sd)
    # torchvision's weights, perturbed so that a zero head or unit BatchNorm hides no difference
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    getattr(torchvision.models, name)().load_state_dict(ours.state_dict(), strict=True)  # and the other way
    batch = built.make_input(BATCH)
    with torch.no_grad():
        eval_diff = max_diff([theirs.eval()(batch)], [ours.eval()(batch)])
    grads = []
    for model in (theirs.train(), ours.train()):
        model.zero_grad()
        output = model(batch)
        built.loss(output, batch).backward()
        grads.append([output] + [p.grad for p in model.parameters()])
    train_diff = max_diff(grads[0][:1], grads[1][:1])
    grad_diff = max_diff(grads[0][1:], grads[1][1:])
    ok = same_init and eval_diff < 1e-4 and train_diff < 1e-4 and grad_diff < 1e-4
    return ok, (f"{len(our_sd)} state_dict entries, keys and shapes identical, strict loads both ways; "
                f"same seed same weights: {'yes' if same_init else 'NO'}; max abs diff: eval output "
                f"{eval_diff:.3g}, train output {train_diff:.3g}, gradients {grad_diff:.3g}")


def main(names: list[str]) -> int:
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, image {IMAGE_SIZE}, batch {BATCH}")
    failed = 0
    for name in names:
        try:
            ok, detail = check(name)
        except Exception as exc:  # one model's failure is its verdict, not the end of the check
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        failed += not ok
        print(f"{name}: {'SAME' if ok else 'DIFFERENT'} ({detail})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    unknown = [n for n in sys.argv[1:] if n not in OURS]
    if unknown:
        sys.exit(f"unknown model {unknown[0]!r}; valid: {', '.join(OURS)}")
    sys.exit(main(sys.argv[1:] or list(DEFAULT)))
