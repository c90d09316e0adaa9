"""pytest options of the pytest-benchmark suite (benchmarks/pytest_suite/).

They must live here, at the top of `pytest benchmarks`, for pytest to know them before collecting.
No imports: asv imports every module in this folder, and its environments have no pytest.
"""


def pytest_addoption(parser):
    parser.addoption("--gradbench-grid", choices=("smoke", "quick", "default", "full"), default=None,
                     help="which grid to benchmark (default: $GRADBENCH_GRID or quick)")
    parser.addoption("--gradbench-compile", default=None, help="torch.compile settings, e.g. none,default "
                     "(default: $GRADBENCH_COMPILE, else none: eager)")
    parser.addoption("--gradbench-autocast", default=None, help="autocast settings, e.g. none,bfloat16 "
                     "(default: $GRADBENCH_AUTOCAST, else none)")


def pytest_configure(config):
    """A bad grid, compile or autocast setting is one line before collection, not a collection error."""
    import os

    asked = [config.getoption(o) for o in ("--gradbench-compile", "--gradbench-autocast")]
    if not any(asked) and not {"GRADBENCH_COMPILE", "GRADBENCH_AUTOCAST"} & set(os.environ):
        return
    import pytest

    from gradbench.harness import GRIDS, with_axes

    try:
        with_axes(GRIDS["quick"], config.getoption("--gradbench-compile"), config.getoption("--gradbench-autocast"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
