"""torch.compile and torch.autocast around a workload's forward, and what the compiler did for a case.

Dynamo keeps its compiled code per Python code object, for the whole process, guarded by what it
assumed while tracing (training flags, grad mode, requires_grad, autocast state). So one compiled
model serves a workload's group of modes in the order they run, as it would for a user switching
modes, and a mode whose switch breaks a guard recompiles. A new group (another workload, compile or
autocast setting) starts from ``torch.compiler.reset()``, so that no group inherits another's code;
``cold`` resets before every case, and keeps inductor's on-disk caches out of it too.

What happened is read from the compiler's own instruments: its compile callbacks (a compile id
'F/N' with N > 0 is frame F compiled again: a recompilation) and dynamo's log of failed guards; and
what runs, from torch.profiler (compiled frames entered, compiled graphs called). Nothing is
inferred from the mode.
"""
from __future__ import annotations

import contextlib
import re
from typing import Callable

import torch

COMPILE_SETTINGS = ("none", "default", "max-autotune", "reduce-overhead")
AUTOCAST_SETTINGS = ("none", "bfloat16", "float16")
CUDA_ONLY = {"compile": ("reduce-overhead",), "autocast": ("float16",)}
RECOMPILE_LIMIT = 64  # dynamo's default (8) is less than a group's nine modes with two steps each


def validate_setting(axis: str, value: str, device: str) -> None:
    """One-line errors naming the valid values (those valid on this device)."""
    valid = COMPILE_SETTINGS if axis == "compile" else AUTOCAST_SETTINGS
    if value not in valid:
        raise ValueError(f"unknown {axis} {value!r}; valid {axis} settings: {', '.join(valid)}")
    if value in CUDA_ONLY[axis] and not str(device).startswith("cuda"):
        here = ", ".join(v for v in valid if v not in CUDA_ONLY[axis])
        raise ValueError(f"{axis} {value!r} needs a CUDA device (it is used with {device!r}); "
                         f"valid {axis} settings on cpu: {here}")


def cuda_only(compile: str, autocast: str) -> bool:
    """The settings ask for something that exists on CUDA only (a cpu case of them cannot run)."""
    return compile in CUDA_ONLY["compile"] or autocast in CUDA_ONLY["autocast"]


def autocast_not_applicable(autocast: str, dtype: str) -> str | None:
    """Why autocast does not apply to a model of ``dtype`` (None where it does)."""
    if autocast != "none" and dtype != "float32":
        return (f"autocast {autocast!r} lowers float32 work; the model is already {dtype} (autocast applies to "
                "float32 models)")
    return None


def autocast_scope(device: torch.device, autocast: str):
    if autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, autocast))


def autocast_entry(device: torch.device, autocast: str):
    """autocast_scope as a factory, to enter again where a dispatch mode runs an operator's inside (the tensor
    tracker); None without autocast."""
    return None if autocast == "none" else lambda: autocast_scope(device, autocast)


class _Compiler:
    """The process's one compiled model and the callback that counts the compiler's work."""

    def __init__(self):
        self.group: tuple | None = None
        self.module: Callable | None = None
        self.events: list[tuple[str, str]] = []  # (trigger, compile id), in order
        self._registered = False

    def _register(self) -> None:
        if self._registered:
            return
        from torch._dynamo.callback import callback_handler

        def started(args):
            self.events.append((args.callback_trigger.name, args.compile_id))

        callback_handler.register_start_callback(started)
        self._registered = True

    def module_for(self, model: torch.nn.Module, group: tuple, compile: str, cold: bool) -> Callable:
        """The compiled model of ``group``; a new group, or a cold case, starts from empty caches."""
        if cold or self.group != group or self.module is None:
            torch.compiler.reset()  # which also drops dynamo's callbacks, its guard-failure log and counters
            self._registered = False
            self.module = torch.compile(model, mode=None if compile == "default" else compile)
            self.group = group
        self._register()
        return self.module


COMPILER = _Compiler()


def forward_for(workload, compile: str, autocast: str, cold: bool = False) -> Callable[[], object]:
    """The forward a case runs: the workload's model, compiled as asked, under autocast as asked."""
    if compile == "none":
        run = workload.forward
    else:
        module = COMPILER.module_for(workload.model, (workload.serial, compile, autocast), compile, cold)

        def run():
            return module(*workload.inputs.args, **workload.inputs.kwargs)
    if autocast == "none":
        return run

    def autocast_run():
        with autocast_scope(workload.device, autocast):
            return run()
    return autocast_run


@contextlib.contextmanager
def compiler_settings(compile: str, cold: bool):
    """Recompiling past dynamo's limit falls back to eager in silence; here it is an error, and the limit
    is above what a group needs. Cold cases read and write no on-disk cache."""
    if compile == "none":
        yield
        return
    import torch._dynamo
    import torch._inductor.config

    patches = [torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, accumulated_recompile_limit=1024,
                                          fail_on_recompile_limit_hit=True)]
    if cold:
        patches.append(torch._inductor.config.patch(force_disable_caches=True))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield


def _guard_failures() -> list[str]:
    from torch._dynamo.utils import guard_failures

    return [reason for reasons in guard_failures.values() for reason in reasons]


def last_guard_failure() -> str | None:
    """The most recent guard dynamo found failing, as one line (what made it compile again)."""
    failures = _guard_failures()
    return _reason(failures[-1]) if failures else None


_COMPILE_ID = re.compile(r"(\d+)/(\d+)")
_ENTRY = re.compile(r"^\s*\d+/\d+:\s*")  # which cache entry the guard belonged to: each entry fails its own


def _reason(text: str) -> str:
    """A failed guard as one line: the first (dynamo adds the user's stack below), no entry prefix."""
    return _ENTRY.sub("", str(text).strip().splitlines()[0] if str(text).strip() else "").strip()


class NotCompiled(Exception):
    """No compiled code runs in the model's step in this mode: it runs eager."""


def compiled_code_run(step: Callable[[], None]) -> tuple[int, int]:
    """(compiled frames, compiled graphs) one call of ``step`` ran, as torch.profiler sees dynamo enter
    them ("Torch-Compiled Region") and inductor call them. An instrument of its own, apart from the
    compile callbacks: dynamo can compile a frame and capture nothing in it (an LSTM; a
    torch._dynamo.disable'd forward runs eager inside a compiled frame), or reuse one mode's code for
    another. A graph break resumes in a frame of its own: frames beyond the first are breaks."""
    from torch.profiler import ProfilerActivity, profile

    from .measure.memory import stderr_silenced

    with stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    names = [event.name for event in prof.events()]
    return (sum(1 for n in names if n.startswith("Torch-Compiled Region")),
            sum(1 for n in names if n.startswith("## Call CompiledFxGraph")))


def compilations() -> int:
    """Compilations so far in this process (to see whether any happened while a step was timed)."""
    return len(COMPILER.events)


class CompileWatch:
    """The compiler's work between enter and exit (entered after ``forward_for``, whose reset would clear
    what it counts): dynamo's compilations of frames (a frame compiled again is a recompilation), the
    backward graphs AOTAutograd compiles at a graph's first backward, and the guards that failed."""

    def __enter__(self):
        COMPILER._register()
        self._events, self._failures = len(COMPILER.events), len(_guard_failures())
        return self

    def __exit__(self, *exc):
        self.read()

    def read(self) -> None:
        """Count what happened since enter (again at exit: compilations while a harness times are counted)."""
        events = COMPILER.events[self._events:]
        frames = [_COMPILE_ID.search(i) for t, i in events if t == "DYNAMO"]
        self.compiles = len(frames) + sum(1 for t, _ in events if t == "LAZY_BACKWARD")
        self.recompiles = sum(1 for m in frames if m and int(m.group(2)) > 0)
        self.reasons = list(dict.fromkeys(_reason(r) for r in _guard_failures()[self._failures:]))

    def fields(self) -> dict:
        """The record's compile fields."""
        self.read()
        return dict(compiles=self.compiles, recompiles=self.recompiles, recompile_reasons=self.reasons)
