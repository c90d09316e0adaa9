"""Every global switch a case depends on, and how each is read and set: torch's flags and backend switches,
global module hooks, the function- and dispatch-mode stacks, torch's functions and nn.Module's methods as
bound, warnings filters, the working directory and the garbage collector. A switch of many parts has a
value type that compares and names its parts. What each switch should be, and checking and restoring
them around a case, is state.py's.
"""
from __future__ import annotations

import gc
import os
import types
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as _functional
from torch.nn.modules import module as _nn_module
from torch.overrides import _get_current_function_mode_stack
from torch.utils import _python_dispatch

def _attribute(owner, name: str) -> "tuple[Callable, Callable]":
    """Getter and setter of a module flag such as torch.backends.mkldnn.enabled."""
    def set_quietly(value):
        with warnings.catch_warnings():  # some flags warn that a newer API exists; the value is what matters
            warnings.simplefilter("ignore")
            setattr(owner, name, value)
    return (lambda: getattr(owner, name)), set_quietly


@dataclass(frozen=True)
class Switch:
    name: str
    get: Callable[[], object]
    set: Callable[[object], None] | None  # None: only settable as a scope (inference mode)


@dataclass(frozen=True)
class GlobalHooks:
    """What torch.nn's dicts of one kind of global module hook hold (and, for backward hooks, whether they
    are full ones): equal when the same hooks are registered; shown by the hooks' names."""

    contents: tuple  # per dict: its (handle id, hook or flag) items
    full_backward: bool | None = None

    def __repr__(self) -> str:
        return _counted(_name_of(h) for items in self.contents for _, h in items if callable(h))


def _name_of(obj) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _counted(names) -> str:
    """'[a.f, b.g x3]': each name once, in order, with how many times it occurs."""
    counts = Counter(names)
    return f"[{', '.join(name if n == 1 else f'{name} x{n}' for name, n in counts.items())}]"


def _global_hooks(*dicts: str, flag: str | None = None) -> "tuple[Callable, Callable]":
    """Getter and setter of global module hooks kept in torch.nn.modules.module's dicts ``dicts`` (the
    first holds the hooks, any others their options) and, for backward hooks, the ``flag`` of their kind."""
    def get():
        return GlobalHooks(tuple(tuple(getattr(_nn_module, d).items()) for d in dicts),
                           getattr(_nn_module, flag) if flag else None)

    def set_(value: GlobalHooks):
        for name, items in zip(dicts, value.contents):
            held = getattr(_nn_module, name)  # the dict itself: torch's handles remove from this very object
            held.clear()
            held.update(items)
        if flag:
            setattr(_nn_module, flag, value.full_backward)
    return get, set_


def _set_working_directory(path: str) -> None:
    try:
        os.chdir(path)
    except OSError:  # gone since: the change is named all the same
        pass


def working_directory() -> str:
    try:
        return os.getcwd()
    except OSError:  # removed while current
        return "(removed)"


@dataclass(frozen=True, eq=False)
class ModeStack:
    """The modes on torch's function-mode or dispatch-mode stack, bottom first (the default device's own
    mode, torch.set_default_device's, is the "default device" switch's and not listed): equal when the
    very same modes are pushed; shown by their classes."""

    modes: tuple = ()

    def __eq__(self, other) -> bool:
        return isinstance(other, ModeStack) and len(self.modes) == len(other.modes) and \
            all(a is b for a, b in zip(self.modes, other.modes))

    def __repr__(self) -> str:
        return _counted(_name_of(type(m)) for m in self.modes)


def _global_device_context():
    return getattr(getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None), "device_context", None)


def _function_modes() -> ModeStack:
    device = _global_device_context()
    return ModeStack(tuple(m for m in _get_current_function_mode_stack() if m is not device))


def _set_function_modes(value: ModeStack) -> None:
    """Pop every mode, then push back the default device's own (at the bottom, where torch keeps it) and
    ``value``'s. Popped, not exited: a mode's own __exit__ is the model's code."""
    device = _global_device_context()
    popped = [torch._C._pop_torch_function_stack() for _ in range(torch._C._len_torch_function_stack())]
    keep = [m for m in popped if m is device]
    for mode in keep + list(value.modes):
        torch._C._push_on_torch_function_stack(mode)


def _dispatch_modes() -> ModeStack:
    return ModeStack(tuple(_python_dispatch._get_current_dispatch_mode_stack()))


def _set_dispatch_modes(value: ModeStack) -> None:
    """Pop every mode, then push ``value``'s. TorchDispatchMode's own __exit__ and __enter__ (the base
    class's, not a subclass's) keep torch's is-in-a-dispatch-mode flags right; a mode pushed without
    __enter__ is popped plainly."""
    base = _python_dispatch.TorchDispatchMode
    while torch._C._len_torch_dispatch_stack():
        top = torch._C._get_dispatch_stack_at(torch._C._len_torch_dispatch_stack() - 1)
        if isinstance(top, base) and top.__dict__.get("old_dispatch_mode_flags"):
            base.__exit__(top, None, None, None)
        else:
            _python_dispatch._pop_mode(top.__dict__.get("_mode_key"))
    for mode in value.modes:
        base.__enter__(mode) if isinstance(mode, base) else _python_dispatch._push_mode(mode)


_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_REMOVED = object()


def _installed_by_torch(obj) -> bool:
    """A function torch binds in place of one of its own: a closure in torch's own package (torch._dynamo
    wraps torch.manual_seed and tags nn.Module.__init__ and __setstate__ when it first compiles)."""
    obj = getattr(obj, "__func__", obj)  # staticmethod, classmethod
    code = getattr(obj, "__code__", None)
    return code is not None and "<locals>" in getattr(code, "co_qualname", "<locals>") and \
        os.path.abspath(code.co_filename).startswith(_TORCH_DIR)


@dataclass(frozen=True, eq=False)
class Bindings:
    """What each attribute of a namespace (torch's callables, torch.nn.functional's, nn.Module's methods) is
    bound to, compared by identity: equal when no attribute was rebound or removed, save by torch itself."""

    prefix: str
    owner: object
    objects: tuple  # (name, object) pairs

    def rebound(self, found: "Bindings") -> list[tuple[str, object]]:
        """(name, object in ``found``) for each attribute ``found`` binds otherwise, where neither binding is
        torch's own wrapper (so that equality is the same both ways round)."""
        now = dict(found.objects)
        out = []
        for name, obj in self.objects:
            new = now.get(name, _REMOVED)
            if new is not obj and not _installed_by_torch(new) and not _installed_by_torch(obj):
                out.append((name, new))
        return out

    def changes_to(self, found: "Bindings") -> list[str]:
        return [f"{self.prefix}.{name} " + ("removed" if new is _REMOVED else f"replaced by {_name_of(new)}")
                for name, new in self.rebound(found)]

    def __eq__(self, other) -> bool:
        return isinstance(other, Bindings) and not self.rebound(other) and not other.rebound(self)

    def __repr__(self) -> str:
        return f"<{len(self.objects)} attributes of {self.prefix}>"


def _is_callable(obj) -> bool:
    return callable(obj) and not isinstance(obj, types.ModuleType)


def _is_method(obj) -> bool:
    return callable(obj) or isinstance(obj, (staticmethod, classmethod, property))


def _bindings(prefix: str, owner, keep: Callable[[object], bool]) -> "tuple[Callable, Callable]":
    """Getter and setter of a namespace's bindings: setting rebinds what was rebound and not by torch."""
    def get():
        return Bindings(prefix, owner, tuple((n, o) for n, o in list(vars(owner).items()) if keep(o)))

    def set_(value: Bindings):
        for name, _ in value.rebound(get()):
            setattr(owner, name, dict(value.objects)[name])
    return get, set_


def _flush_denormal() -> bool:
    """torch has no getter for set_flush_denormal: a denormal float32 times one reads back as zero when it is
    on. The flag is the calling thread's (the CPU's FTZ/DAZ bits), as is this one-element probe; no mode a
    model left pushed sees it."""
    with torch._C._DisableTorchDispatch(), torch._C.DisableTorchFunction():
        return torch.tensor([1e-40], dtype=torch.float32, device="cpu").mul(1.0).item() == 0.0


def _set_gc_enabled(value: bool) -> None:
    gc.enable() if value else gc.disable()


def _describe_filter(f: tuple) -> str:
    action, message, category, module, lineno = f
    return " ".join(filter(None, (action, category.__name__, message and f"matching {message.pattern!r}",
                                  module and f"in {module.pattern}", lineno and f"line {lineno}")))


def _a_librarys_own(f: tuple) -> bool:
    """A filter for a library's own warning class (sympy's import adds 'once' for SymPyDeprecationWarning):
    the library's business, hiding none of gradbench's or another model's warnings."""
    return f[2].__module__ != "builtins"


@dataclass(frozen=True, eq=False)
class WarningFilters:
    """warnings.filters: equal when no filter was added or removed, save a library's for its own class
    (whose going is as harmless)."""

    filters: tuple

    def _diff(self, found: "WarningFilters") -> tuple[list, list]:
        added = [f for f in found.filters if f not in self.filters and not _a_librarys_own(f)]
        removed = [f for f in self.filters if f not in found.filters and not _a_librarys_own(f)]
        return added, removed

    def changes_to(self, found: "WarningFilters") -> list[str]:
        added, removed = self._diff(found)
        return [f"warnings filter {_describe_filter(f)} added" for f in added] + \
            [f"warnings filter {_describe_filter(f)} removed" for f in removed]

    def __eq__(self, other) -> bool:
        return isinstance(other, WarningFilters) and self._diff(other) == ([], [])

    def __repr__(self) -> str:
        return f"<{len(self.filters)} warnings filters>"


def _warning_filters() -> WarningFilters:
    return WarningFilters(tuple(warnings.filters))


def _set_warning_filters(value: WarningFilters) -> None:
    """As ``value`` holds them, keeping what a library added for its own class since."""
    kept = [f for f in warnings.filters if f not in value.filters and _a_librarys_own(f)]
    warnings.filters[:] = kept + list(value.filters)
    warnings._filters_mutated()  # cached per-module decisions are stale now


_backends, _matmul = torch.backends, torch.backends.cuda.matmul
SWITCHES = (
    Switch("grad mode enabled", torch.is_grad_enabled, torch.set_grad_enabled),
    Switch("inference mode", torch.is_inference_mode_enabled, None),
    Switch("default dtype", torch.get_default_dtype, torch.set_default_dtype),
    Switch("default device", lambda: str(torch.get_default_device()),
           lambda v: torch.set_default_device(None if v == "cpu" else v)),
    Switch("threads", torch.get_num_threads, torch.set_num_threads),
    Switch("deterministic algorithms", torch.are_deterministic_algorithms_enabled, torch.use_deterministic_algorithms),
    Switch("anomaly detection", torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    Switch("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    Switch("autocast (cpu)", lambda: torch.is_autocast_enabled("cpu"), lambda v: torch.set_autocast_enabled("cpu", v)),
    Switch("autocast (cuda)", lambda: torch.is_autocast_enabled("cuda"),
           lambda v: torch.set_autocast_enabled("cuda", v)),
    Switch("mkldnn.enabled", *_attribute(_backends.mkldnn, "enabled")),
    Switch("cudnn.enabled", *_attribute(_backends.cudnn, "enabled")),
    Switch("cudnn.benchmark", *_attribute(_backends.cudnn, "benchmark")),
    Switch("cudnn.deterministic", *_attribute(_backends.cudnn, "deterministic")),
    Switch("cudnn.allow_tf32", *_attribute(_backends.cudnn, "allow_tf32")),
    Switch("cuda.matmul.allow_tf32", *_attribute(_matmul, "allow_tf32")),
    Switch("cuda.matmul.allow_fp16_reduced_precision_reduction",
           *_attribute(_matmul, "allow_fp16_reduced_precision_reduction")),
    Switch("cuda.matmul.allow_bf16_reduced_precision_reduction",
           *_attribute(_matmul, "allow_bf16_reduced_precision_reduction")),
    Switch("flash attention", _backends.cuda.flash_sdp_enabled, _backends.cuda.enable_flash_sdp),
    Switch("memory-efficient attention", _backends.cuda.mem_efficient_sdp_enabled,
           _backends.cuda.enable_mem_efficient_sdp),
    Switch("math attention", _backends.cuda.math_sdp_enabled, _backends.cuda.enable_math_sdp),
    Switch("cudnn attention", _backends.cuda.cudnn_sdp_enabled, _backends.cuda.enable_cudnn_sdp),
    Switch("global module forward pre-hooks", *_global_hooks("_global_forward_pre_hooks")),
    Switch("global module forward hooks", *_global_hooks("_global_forward_hooks", "_global_forward_hooks_with_kwargs",
                                                         "_global_forward_hooks_always_called")),
    Switch("global module backward pre-hooks", *_global_hooks("_global_backward_pre_hooks")),
    Switch("global module backward hooks", *_global_hooks("_global_backward_hooks",
                                                          flag="_global_is_full_backward_hook")),
    Switch("global module registration hooks", *_global_hooks("_global_module_registration_hooks",
                                                              "_global_parameter_registration_hooks",
                                                              "_global_buffer_registration_hooks")),
    Switch("working directory", working_directory, _set_working_directory),
    Switch("garbage collector enabled", gc.isenabled, _set_gc_enabled),
    Switch("flush denormal", _flush_denormal, torch.set_flush_denormal),
    Switch("autograd multithreading", torch.autograd.is_multithreading_enabled,
           torch._C._set_multithreading_enabled),
    Switch("warnings filters", _warning_filters, _set_warning_filters),
    Switch("torch functions", *_bindings("torch", torch, _is_callable)),
    Switch("torch.nn.functional functions", *_bindings("torch.nn.functional", _functional, _is_callable)),
    Switch("torch.nn.Module methods", *_bindings("torch.nn.Module", torch.nn.Module, _is_method)),
    Switch("RNG seed", torch.initial_seed, torch.manual_seed),
    # last: set after every other switch, so that no leaked mode is on the stacks while they are set (apply)
    Switch("torch function modes", _function_modes, _set_function_modes),
    Switch("torch dispatch modes", _dispatch_modes, _set_dispatch_modes),
)
MODE_STACKS = ("torch function modes", "torch dispatch modes")
