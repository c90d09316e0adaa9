import os
import sys

# One torch thread per test process and per process it starts (workers, CLI runs inherit the variable):
# the tests assert what a case records, not how fast it runs, and on a machine busy with other work
# (or with a parallel test neighbour) several OpenMP threads per process wait on each other at every
# barrier: a tiny case then takes seconds instead of milliseconds. Set before torch is imported;
# tests about threads set their own count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, FIXTURES)


@pytest.fixture
def fixtures_dir():
    return FIXTURES
