"""The package's layers, read from its source with ast: no import circle, nothing below the report importing
it, and a local run loading no Slurm code (DESIGN.md: data flows one way)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gradbench")
# The command front end may import the report: cli.py and the commands/ package (`gradbench run` ends by
# printing the summary and writing the report there; runner.py, which runs the sweep, does not).
FRONT_END = ("gradbench.cli", "gradbench.commands")


def modules(root: str = PACKAGE) -> dict[str, str]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def import_graph(root: str = PACKAGE) -> tuple[dict[str, set], dict[str, set]]:
    """(module-level edges, edges from imports inside functions) between the package's modules."""
    known = modules(root)
    top: dict[str, set] = {m: set() for m in known}
    inner: dict[str, set] = {m: set() for m in known}

    def targets(module: str, node) -> list[str]:
        here = module.split(".") if known[module].endswith("__init__.py") else module.split(".")[:-1]
        if isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                else node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            names = [a.name for a in node.names]
        found = []
        for name in names:
            while name and name not in known:  # gradbench.x.function -> gradbench.x
                name = name.rpartition(".")[0]
            if name and name != module:
                found.append(name)
        return found

    def walk(module: str, node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (inner if in_function else top)[module].update(targets(module, child))
            walk(module, child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                    ast.Lambda)))

    for module, path in known.items():
        with open(path, encoding="utf-8") as f:
            walk(module, ast.parse(f.read()), False)
    return top, inner


def circles(graph: dict[str, set]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_module_level_imports():
    top, _ = import_graph()
    assert circles(top) == []


def test_no_import_circle_counting_imports_inside_functions_too():
    top, inner = import_graph()
    assert circles({m: top[m] | inner[m] for m in top}) == []


def test_nothing_below_the_report_imports_it():
    top, inner = import_graph()
    upward = sorted(f"{m} -> {t}" for m in top for t in top[m] | inner[m]
                    if t.startswith("gradbench.report") and not m.startswith(("gradbench.report", *FRONT_END)))
    assert upward == []


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from .b import f\n")
    (root / "b.py").write_text("def f():\n    from .sub import c\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "c.py").write_text("from .. import a\nimport pkg.b\n")
    top, inner = import_graph(str(root))
    assert top["pkg.a"] == {"pkg.b"} and inner["pkg.b"] == {"pkg.sub.c"} and top["pkg.sub.c"] == {"pkg.a", "pkg.b"}
    assert circles(top) == [] and circles({m: top[m] | inner[m] for m in top}) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def _loaded_on_the_way_to_a_local_run(tmp_path) -> str:
    """The modules a local `gradbench run` loads up to the sweep (settings parsed, --out checked and locked),
    as -X importtime lists them."""
    code = ("import sys\n"
            "from gradbench.cli import build_parser\n"
            "from gradbench.settings import run_settings\n"
            "import gradbench.runner as runner\n"
            "args = build_parser().parse_args(['run', '--devices', 'cpu', '--models', 'mlp', '--sizes', 'tiny',\n"
            "    '--batch-sizes', '2', '--modes', 'eval', '--no-report', '--out', sys.argv[1]])\n"
            "settings = run_settings(args)\n"
            "import gradbench.executors.local as local\n"
            "def stop(*args, **kwargs):\n"
            "    print('sweep reached')\n"
            "    raise SystemExit(0)  # the sweep itself is not what is checked\n"
            "local.LocalExecutor.run = stop\n"
            "runner.execute(settings)\n")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True, timeout=300, cwd=os.path.dirname(PACKAGE))
    assert done.returncode == 0 and done.stdout == "sweep reached\n", done.stderr[-2000:]
    return done.stderr


def test_a_local_run_loads_no_slurm_code_and_never_looks_for_sbatch(tmp_path):
    loaded = _loaded_on_the_way_to_a_local_run(tmp_path)
    assert "gradbench.runner" in loaded
    assert [line for line in loaded.splitlines() if "slurm" in line.lower()] == []


def test_parsing_a_local_runs_settings_asks_no_path_for_slurm(monkeypatch):
    import shutil

    from gradbench.cli import build_parser
    from gradbench.settings import run_settings

    def which(command, *args, **kwargs):
        raise AssertionError(f"looked for {command!r} on PATH")

    monkeypatch.setattr(shutil, "which", which)
    args = build_parser().parse_args(["run", "--devices", "cpu", "--models", "mlp", "--sizes", "tiny",
                                      "--batch-sizes", "2", "--modes", "eval", "--no-report"])
    assert run_settings(args).launcher == "local"
