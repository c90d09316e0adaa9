"""The set-up CI runs (`make setup`: tools/install_torch.py, then the test extra, which includes the zoo's
transformers) leaves torch as install_torch put it and the zoo importable. Outside CI a developer's own
torch (a CUDA build, another version) is theirs, so the version check runs under CI only."""
import importlib.util
import os
import runpy
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not os.environ.get("CI"), reason="checks CI's fresh set-up only (CI=true)")
def test_ci_setup_kept_the_torch_it_installed_and_has_the_zoo():
    spec = runpy.run_path(str(ROOT / "tools" / "install_torch.py"), run_name="not_main")["SPEC"]
    wanted = spec.split("==", 1)[1] if "==" in spec else None
    if wanted:
        assert torch.__version__.split("+")[0] == wanted, f"torch moved from {spec} to {torch.__version__}"
    assert importlib.util.find_spec("transformers") is not None, "the test extra must install the zoo's transformers"
    from gradbench.zoo import text  # noqa: F401  (imports transformers' model classes)
