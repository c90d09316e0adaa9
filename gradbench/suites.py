"""Grids shipped with the package: ``gradbench run --suite NAME``. A suite is a union of parts, one per
family, because each family has its own sizes, batches and input lengths; every other setting of the run
(devices, dtypes, modes, steps, --max-time, ...) applies to every part. Options given with --suite narrow it
(--models and --sizes keep the parts' models and sizes among those given) or replace a part's own values
(--batch-sizes, --seq-len, --image-size, --dtypes, --steps)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One family's share of a suite: what run's options of the same names would say."""

    models: tuple[str, ...]
    sizes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    seq_len: tuple[int, ...] = ()
    image_size: tuple[int, ...] = ()
    dtypes: tuple[str, ...] = ()  # () : the run's
    steps: tuple[str, ...] = ()

    def settings(self) -> dict:
        """The part as run settings (lists of names, as the command line gives them)."""
        out = {"models": list(self.models), "sizes": list(self.sizes),
               "batch_sizes": [str(b) for b in self.batch_sizes]}
        for key in ("seq_len", "image_size", "dtypes", "steps"):
            if getattr(self, key):
                out[key] = [str(v) for v in getattr(self, key)]
        return out


@dataclass(frozen=True)
class Suite:
    parts: tuple[Part, ...]
    description: str
    devices: tuple[str, ...] = ()  # () : the run's default (cpu, and cuda where available)


SUITES: dict[str, Suite] = {
    "reference": Suite((
        Part(("resnet",), ("18", "50", "101", "152"), (32, 128, 256), image_size=(224,)),
        Part(("vit",), ("b_16", "l_16"), (32, 128), image_size=(224,)),
        Part(("bert",), ("base", "large"), (8, 32), seq_len=(128, 512)),
        Part(("gpt2",), ("small", "medium", "large", "xl"), (8,), seq_len=(512, 1024)),
        Part(("llama",), ("1b", "3b", "8b"), (1, 4), seq_len=(2048,), dtypes=("bfloat16",)),
    ), "every reference family at its published sizes, batches and lengths for one 80 GB GPU (llama in bfloat16)",
        devices=("cuda",)),
    "reference-cpu": Suite((
        Part(("resnet",), ("18", "50"), (4,), image_size=(224,)),
        Part(("vit",), ("ti_16",), (4,), image_size=(224,)),
        Part(("bert",), ("base",), (8,), seq_len=(128,)),
        Part(("gpt2",), ("small",), (2,), seq_len=(128,)),
        Part(("llama",), ("1b",), (1,), seq_len=(32,), steps=("forward",)),
    ), "the smallest reference sizes at small inputs: about ten minutes on a 2-core CPU (llama 1b forward only)",
        devices=("cpu",)),
}
NARROWING = ("models", "sizes")
REPLACING = ("batch_sizes", "seq_len", "image_size", "dtypes", "steps")


def suite_settings(name: str, settings: dict) -> list[dict]:
    """The run settings of each part of suite ``name`` under the run's own ``settings`` (see the module's
    docstring); ValueError naming the valid suites, or saying that the narrowing left nothing."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}")
    suite, parts = SUITES[name], []
    offered = {key: {v for p in suite.parts for v in getattr(p, key)} for key in NARROWING}
    for key in NARROWING:  # a name the suite does not have is a typo or a misunderstanding, not a silent no-op
        stray = [v for v in settings.get(key, ()) if v not in offered[key]]
        if stray:
            raise ValueError(f"suite {name!r} has no {key[:-1]} {stray[0]!r}; its models and sizes: "
                             + "; ".join(f"{m}: {' '.join(p.sizes)}" for p in suite.parts for m in p.models))
    for part in suite.parts:
        own = {**({"devices": list(suite.devices)} if suite.devices and "devices" not in settings else {}),
               **part.settings()}
        for key in NARROWING:
            if key in settings:
                own[key] = [v for v in own[key] if v in settings[key]]
        if not own["models"] or not own["sizes"]:
            continue
        replaced = {k: settings[k] for k in REPLACING if k in settings and (k in ("batch_sizes", "dtypes", "steps")
                                                                           or k in own)}
        parts.append({**{k: v for k, v in settings.items() if k not in REPLACING}, **own, **replaced})
    if not parts:
        given = "; ".join(f"--{k.replace('_', '-')} {' '.join(settings[k])}" for k in NARROWING if k in settings)
        raise ValueError(f"suite {name!r} has no case for {given}; its models and sizes: "
                         + "; ".join(f"{m}: {' '.join(p.sizes)}" for p in suite.parts for m in p.models))
    for axis in ("seq_len", "image_size"):
        chosen = {p["models"][0] for p in parts}
        if axis in settings and not any(getattr(p, axis) for p in suite.parts if p.models[0] in chosen):
            raise ValueError(f"--{axis.replace('_', '-')} given, but none of the suite's models chosen takes one")
    return parts
