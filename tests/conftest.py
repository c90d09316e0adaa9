import os
import sys

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, FIXTURES)


@pytest.fixture
def fixtures_dir():
    return FIXTURES
