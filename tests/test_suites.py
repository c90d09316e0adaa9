"""--suite: a union of per-family parts; the run's options narrow it or replace a part's values; bad uses
are one line."""
from collections import Counter

import pytest

from gradbench.cli import build_parser
from gradbench.errors import BadInput
from gradbench.settings import run_settings
from gradbench.suites import SUITES


def cases(*argv):
    return run_settings(build_parser().parse_args(["run", *argv])).cases


def workloads(found):
    return Counter((c.model, c.size, c.batch_size, c.seq_len, c.image_size, c.dtype, c.device) for c in found)


def test_reference_cpu_is_its_parts_on_the_cpu():
    found = workloads(cases("--suite", "reference-cpu"))
    assert found == {("resnet", "18", 4, None, 224, "float32", "cpu"): 12,
                     ("resnet", "50", 4, None, 224, "float32", "cpu"): 12,
                     ("vit", "ti_16", 4, None, 224, "float32", "cpu"): 12,
                     ("bert", "base", 8, 128, None, "float32", "cpu"): 12,
                     ("gpt2", "small", 2, 128, None, "float32", "cpu"): 12,
                     ("llama", "1b", 1, 32, None, "float32", "cpu"): 6}  # forward only


def test_every_suite_validates_and_names_each_family():
    for name, suite in SUITES.items():
        found = cases("--suite", name, "--devices", "cpu")  # cuda needs a GPU here
        assert {c.model for c in found} == {m for p in suite.parts for m in p.models}
        for part in suite.parts:
            assert {c.size for c in found if c.model == part.models[0]} == set(part.sizes)


def test_models_and_sizes_narrow_other_options_replace():
    found = workloads(cases("--suite", "reference", "--devices", "cpu", "--models", "bert", "gpt2",
                            "--sizes", "base", "small", "--seq-len", "64", "--batch-sizes", "2"))
    assert set(found) == {("bert", "base", 2, 64, None, "float32", "cpu"), ("gpt2", "small", 2, 64, None, "float32", "cpu")}
    # --image-size replaces the image parts' own only; the text parts keep theirs
    found = workloads(cases("--suite", "reference-cpu", "--models", "vit", "bert", "--image-size", "32"))
    assert set(found) == {("vit", "ti_16", 4, None, 32, "float32", "cpu"), ("bert", "base", 8, 128, None, "float32", "cpu")}


@pytest.mark.parametrize("argv, message", [
    (["--suite", "nope"], "unknown suite 'nope'; valid suites: reference, reference-cpu"),
    (["--suite", "reference-cpu", "--models", "mlp"], "suite 'reference-cpu' has no model 'mlp'; its models"),
    (["--suite", "reference-cpu", "--models", "mlp", "resnet"], "suite 'reference-cpu' has no model 'mlp'; its models"),
    (["--suite", "reference-cpu", "--models", "resnet", "--sizes", "18", "999"], "suite 'reference-cpu' has no size '999'"),
    (["--suite", "reference-cpu", "--models", "bert", "--sizes", "18"],
     "suite 'reference-cpu' has no case for --models bert; --sizes 18; its models"),
    (["--suite", "reference-cpu", "--quick"], "--quick and --suite are two grids; give one"),
    (["--suite", "reference-cpu", "--models", "resnet", "--seq-len", "64"],
     "--seq-len given, but none of the suite's models chosen takes one"),
])
def test_bad_suite_use_is_one_line(argv, message):
    with pytest.raises(BadInput, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        cases(*argv)


def test_reference_on_a_machine_without_cuda_says_how_to_run_it_here(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BadInput, match=r"suite 'reference' runs on cuda; --devices cpu runs it here"):
        cases("--suite", "reference")
