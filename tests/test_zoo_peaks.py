"""peak_bytes of the reference families against an independent measurement: `gradbench run` measures each
family's cases, then tools/plain_peak.py, in another process, builds the same model and batch, applies the mode
and writes the step out in plain code, and sums the CPU allocator's events torch.profiler records over it.

They agree to the byte: on CPU both read every allocation and free of PyTorch's allocator over the same step, so
any difference is a step that allocates differently (plain_peak once kept the output through the backward and
peaked higher by the logits, which a cross-entropy loss does not save: 8,000 bytes on resnet and vit, 3.2 MB on
gpt2), which is what this test is for.
"""
import json
import os
import subprocess
import sys

import pytest

from gradbench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = {"resnet": ("18", "--image-size", "32"), "vit": ("ti_16", "--image-size", "32"),
            "bert": ("base", "--seq-len", "8"), "gpt2": ("small", "--seq-len", "8")}
MODES = ("train", "eval", "no_grad", "eval_no_grad", "frozen", "finetune_head")
KEY = ("model", "size", "batch_size", "seq_len", "image_size", "mode", "step")


@pytest.mark.parametrize("model", FAMILIES)
def test_peak_bytes_equal_plain_codes_torch_profiler_peak(model, tmp_path, capsys):
    size, axis, value = FAMILIES[model]
    results, peaks = tmp_path / "results.jsonl", tmp_path / "plain.jsonl"
    code = main(["run", "--models", model, "--sizes", size, axis, value, "--batch-sizes", "2", "--devices", "cpu",
                 "--modes", *MODES, "--max-time", "0.01", "--out", str(results), "--no-report"])
    assert code == 0, capsys.readouterr()
    records = [json.loads(line) for line in results.read_text().splitlines()]
    ok = {tuple(r[k] for k in KEY): r["peak_bytes"] for r in records if r["status"] == "ok"}
    # every mode's forward, and the train steps of the modes with a graph
    assert len(ok) == len(MODES) + 3 and len(records) == 2 * len(MODES), [(r["mode"], r["step"]) for r in records]
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plain_peak.py"), "--results", str(results),
                           "--out", str(peaks)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    plain = {tuple(p[k] for k in KEY): p.get("plain_peak_bytes", p.get("plain_error"))
             for p in map(json.loads, peaks.read_text().splitlines())}
    assert plain == ok
