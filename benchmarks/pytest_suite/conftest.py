"""pytest-benchmark suite set-up: the grid option and the machine information pytest-benchmark lacks."""
import pytest

from gradbench.harness import GRIDS, grid_from_env, with_axes


def pytest_generate_tests(metafunc):
    if "gradbench_case" not in metafunc.fixturenames:
        return
    name = metafunc.config.getoption("--gradbench-grid")
    grid = with_axes(GRIDS[name] if name else grid_from_env(), metafunc.config.getoption("--gradbench-compile"),
                     metafunc.config.getoption("--gradbench-autocast"))  # checked in benchmarks/conftest.py
    cases = [
        (model, size, batch, device, grid.dtypes[0], mode, compile, autocast)
        for model in grid.models for size in grid.sizes for batch in grid.batch_sizes
        for device in grid.devices for compile in grid.compile for autocast in grid.autocast for mode in grid.modes
    ]
    ids = [f"{m}-{s}-b{b}-{d}-{t}" + "".join(f"-{a}" for a in (c, ac) if a != "none") + f"-{mode}"
           for m, s, b, d, t, mode, c, ac in cases]
    metafunc.parametrize("gradbench_case", cases, ids=ids)


def pytest_benchmark_update_machine_info(config, machine_info):
    from gradbench.env import fingerprint

    info = fingerprint()
    machine_info["gradbench"] = {k: info[k] for k in ("gradbench_version", "git_commit")}
    machine_info["torch"] = info["torch"]
    machine_info["cuda"] = info["cuda"]
    machine_info["gpu"] = info["gpu"]
    machine_info["gpu_count"] = info["gpu_count"]
    machine_info["driver"] = info["driver"]


@pytest.fixture
def prepared():
    """Opens gradbench BenchmarkCases and closes them (mode undone, weights restored) after the test."""
    from gradbench.harness import BenchmarkCase, NotApplicable

    opened = []

    def open_case(*args, **kwargs):
        try:
            case = BenchmarkCase(*args, **kwargs)
        except NotApplicable as exc:
            pytest.skip(str(exc))
        opened.append(case)
        return case

    yield open_case
    for case in opened:
        case.close()
