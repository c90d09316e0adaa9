"""pytest options of the pytest-benchmark suite (benchmarks/pytest_suite/).

They must live here, at the top of `pytest benchmarks`, for pytest to know them before collecting.
No imports: asv imports every module in this folder, and its environments have no pytest.
"""


def pytest_addoption(parser):
    parser.addoption("--gradbench-grid", choices=("quick", "default", "full"), default=None,
                     help="which grid to benchmark (default: $GRADBENCH_ASV_GRID or quick)")
    parser.addoption("--gradbench-compile", default=None, help="torch.compile settings, e.g. none,default "
                     "(default: $GRADBENCH_COMPILE, else none: eager)")
    parser.addoption("--gradbench-autocast", default=None, help="autocast settings, e.g. none,bfloat16 "
                     "(default: $GRADBENCH_AUTOCAST, else none)")
