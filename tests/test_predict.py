"""`gradbench predict`: memory computed on fake tensors, checked against the measurement of the same case (the
allocator's own events, an independent path), and what it cannot follow said in one line."""
import json
import subprocess
import sys
import textwrap

import pytest

from gradbench.case import Case
from gradbench.predict import Predictor, cuda_block_bytes, predict
from gradbench.session import Session

FIELDS = ("peak_bytes", "held_bytes", "saved_bytes", "grad_bytes")


def _case(model="transformer", size="tiny", batch_size=4, mode="train", step="forward", **kw):
    return Case(model=model, size=size, batch_size=batch_size, mode=mode, step=step, max_time_s=0.02,
                **kw).validate(here=False)


# Where every byte the step holds is a tensor the dispatcher sees (no kernel-internal buffers), the prediction
# must equal the allocator's measurement to the byte: linear layers, attention through SDPA, layer norm, GELU,
# dropout (its noise under inference mode too), SGD's update, in train, eval and the grad-free modes.
@pytest.mark.parametrize("model,mode,step", [
    ("transformer", "train", "forward"), ("transformer", "train", "train_step"), ("transformer", "eval", "train_step"),
    ("transformer", "no_grad", "forward"), ("transformer", "frozen", "forward"),
    ("transformer", "finetune_head", "train_step"), ("mlp", "train", "train_step"), ("transformer", "inference_mode", "forward"),
])
def test_the_prediction_equals_the_measurement_to_the_byte_where_tensors_are_all_there_is(model, mode, step):
    case = _case(model=model, mode=mode, step=step)
    predicted = predict(case)
    measured = Session().measure(case)
    assert predicted["status"] == measured["status"] == "ok", (predicted.get("error"), measured.get("error"))
    assert predicted["kind"] == "prediction" and predicted["peak_bytes_source"].startswith("predicted")
    assert {f: predicted[f] for f in FIELDS} == {f: measured[f] for f in FIELDS}
    assert predicted["peak_bytes"] > 0


@pytest.mark.parametrize("mode,batch", [("eval_no_grad", 4), ("no_grad", 2), ("no_grad", 4), ("inference_mode", 4)])
def test_a_kernels_own_per_channel_buffers_are_probed_and_counted(mode, batch):
    """BatchNorm's CPU kernel allocates per-channel buffers below the dispatcher (two in inference; in training
    two up to a batch of 2, four from 3): no tensor shows them, so the measurement's dispatch-level cross-check
    misses them; the prediction probes the kernel on a small batch and equals the allocator to the byte."""
    case = _case(model="mlp", mode=mode, batch_size=batch)
    predicted, measured = predict(case), Session().measure(case)
    assert measured["tracked_peak_bytes"] < measured["peak_bytes"] == predicted["peak_bytes"]
    assert predicted["held_bytes"] == measured["held_bytes"]


BATCHNORM = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, transpose=False, sample=(6, 6)):
            super().__init__()
            self.transpose, self.sample = transpose, sample
            self.lin, self.bn = nn.Linear(32, 16 * sample[0] * sample[1]), nn.BatchNorm2d(16)
            self.out = nn.Linear(16 * sample[0] * sample[1], 8)

        def forward(self, x):
            h = self.lin(x).reshape(x.shape[0], 16, *self.sample)
            return self.out(torch.relu(self.bn(h.transpose(2, 3) if self.transpose else h)).flatten(1))

    def plain(size="small"):
        return Net(), lambda b: torch.randn(b, 32)

    def transposed(size="small"):
        return Net(transpose=True), lambda b: torch.randn(b, 32)

    def large(size="small"):
        return Net(sample=(256, 256)), lambda b: torch.randn(b, 32)
""")


@pytest.mark.parametrize("batch", [3, 12, 40])
def test_batchnorms_backward_buffer_grows_with_the_batch_and_is_extrapolated_exactly(batch, tmp_path, monkeypatch):
    """BatchNorm's CPU backward keeps a buffer of its input's size (from a batch of 4): probed at 8 and 16 and
    extrapolated along the line through them, the train step is predicted to the byte beyond the probes."""
    (tmp_path / "bn.py").write_text(BATCHNORM)
    monkeypatch.chdir(tmp_path)
    case = _case(model="bn.py:plain", size="small", batch_size=batch, step="train_step")
    predicted, measured = predict(case), Session().measure(case)
    assert predicted["status"] == measured["status"] == "ok", predicted.get("error")
    assert {f: predicted[f] for f in FIELDS} == {f: measured[f] for f in FIELDS}


def test_a_batchnorm_the_probe_cannot_follow_is_unpredictable_in_one_line(tmp_path, monkeypatch):
    """A transposed input (the CPU kernel returns another layout than the fake one) and a probe larger than
    its limit are said, never a number that would be low."""
    (tmp_path / "bn.py").write_text(BATCHNORM)
    monkeypatch.chdir(tmp_path)
    transposed = predict(_case(model="bn.py:transposed", size="small", batch_size=4))
    assert transposed["status"] == "unpredictable" and "neither contiguous nor channels-last" in transposed["error"]
    large = predict(_case(model="bn.py:large", size="small", batch_size=16))
    assert large["status"] == "unpredictable" and "probe of" in large["error"] and "\n" not in large["error"]


def test_one_workload_is_built_once_for_its_modes_and_steps():
    predictor = Predictor()
    for mode in ("train", "eval", "no_grad"):
        for step in ("forward", "train_step"):
            predictor.predict(_case(mode=mode, step=step))
    assert len(predictor._workloads) == 1


def test_a_cuda_case_is_predicted_without_cuda_with_the_allocators_rounding():
    cpu, cuda = predict(_case(model="mlp", step="train_step")), predict(_case(model="mlp", step="train_step",
                                                                               device="cuda"))
    assert cuda["status"] == "ok" and cuda["device"] == "cuda"
    assert cuda["held_bytes"] == cpu["held_bytes"]
    assert cuda["peak_bytes"] % 512 == 0 and cuda["peak_bytes"] >= cpu["peak_bytes"]
    assert "no CUDA here" in cuda["peak_bytes_source"] or cuda["peak_bytes_source"] == cpu["peak_bytes_source"]


def test_cuda_requests_round_up_to_512_bytes():
    assert [cuda_block_bytes(n) for n in (1, 511, 512, 513, 4096, 4097)] == [512, 512, 512, 1024, 4096, 4608]


def test_a_value_read_in_forward_is_unpredictable_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "reads.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(8, 8)

            def forward(self, x):
                if x.sum().item() > 0:  # a value read in forward: nothing a fake tensor holds
                    return self.lin(x)
                return -self.lin(x)

        def make(size="small"):
            return Net(), lambda b: torch.randn(b, 8)
    """))
    monkeypatch.chdir(tmp_path)
    record = predict(_case(model="reads.py:make", size="small"))
    assert record["status"] == "unpredictable"
    assert "fake tensors cannot follow" in record["error"] and "\n" not in record["error"]
    assert record["peak_bytes"] is None


def test_a_huge_case_is_predicted_without_allocating_it():
    """A step whose peak (hundreds of GiB) is far beyond this machine, predicted in a process whose own resident
    set stays below 2 GiB."""
    code = textwrap.dedent("""
        import json
        from gradbench.case import Case
        from gradbench.measure.memory import process_resident_peak_bytes
        from gradbench.predict import predict
        r = predict(Case(model="mlp", size="large", batch_size=2_000_000, mode="train", step="train_step").validate())
        print(json.dumps([r["status"], r["peak_bytes"], process_resident_peak_bytes()]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    status, peak, resident = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == "ok" and peak > 16 * 2 ** 30
    assert resident < 2 * 2 ** 30


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gradbench.cli", "predict", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_the_command_writes_predictions_and_verifies_them(tmp_path):
    out = tmp_path / "p.jsonl"
    done = _cli("--models", "transformer", "--sizes", "tiny", "--batch-sizes", "4", "--modes", "train",
                "--memory-budget", "2300KiB", "--devices", "cpu", "--verify", "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["kind"] for r in records) == ["case", "case", "prediction", "prediction"]
    assert "budget" in done.stdout and "fits, margin" in done.stdout and "no, short by" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("transformer/tiny") and "train forward" in line)
    assert row.count("1.000") == 3  # peak, held and saved: predicted / measured


@pytest.mark.parametrize("args,named", [
    (["--gpu", "X100"], "unknown GPU 'X100'"),
    (["--memory-budget", "lots"], "bad memory budget"),
    (["--modes", "sideways"], "sideways"),
    (["--out", ""], "--out is empty"),
    (["--gpu", "a100"], "GPU 'a100' names 2: A100-40GB, A100-80GB"),
    (["--gpu", "T4", "--devices", "cpu"], "--gpu sets cuda cases against a GPU's memory"),
])
def test_bad_input_is_one_line_and_exit_2(args, named, tmp_path):
    done = _cli("--models", "mlp", "--sizes", "tiny", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_gpu_is_named_as_people_write_it():
    from gradbench.gpu_table import gpu

    assert gpu("h100").name == gpu("H100 80GB").name == "H100-80GB"
    assert gpu("rtx 4090").name == "RTX4090" and gpu("mi300x").name == "MI300X"


def test_an_lstm_whose_fake_kernel_drops_its_workspace_is_unpredictable_not_low(tmp_path, monkeypatch):
    """mkldnn_rnn_layer's fake kernel returns an empty workspace where the real one saves it for backward
    (a prediction 12 times too low on a small LSTM): said, never a number."""
    (tmp_path / "rnn.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn, self.head = nn.LSTM(16, 32, batch_first=True), nn.Linear(32, 4)

            def forward(self, x):
                return self.head(self.rnn(x)[0][:, -1])

        def make(size="small"):
            return Net(), lambda b: torch.randn(b, 10, 16)
    """))
    monkeypatch.chdir(tmp_path)
    record = predict(_case(model="rnn.py:make", size="small"))
    assert record["status"] == "unpredictable" and "mkldnn_rnn_layer" in record["error"]


def test_an_operator_with_its_own_kernel_is_not_run_through_its_composite_formula(tmp_path, monkeypatch):
    """silu_backward has a composite formula and a CPU kernel; eager runs the kernel (its output alone), so the
    tracker and the prediction must too: a SiLU train step to the byte (Llama's MLP is SiLU)."""
    (tmp_path / "silu.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make(size="small"):
            return nn.Sequential(nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 8)), lambda b: torch.randn(b, 64)
    """))
    monkeypatch.chdir(tmp_path)
    case = _case(model="silu.py:make", size="small", batch_size=16, step="train_step")
    predicted, measured = predict(case), Session().measure(case)
    assert {f: predicted[f] for f in FIELDS} == {f: measured[f] for f in FIELDS}
    assert measured["tracked_peak_bytes"] == measured["peak_bytes"]


def test_compiled_cases_are_unpredictable_before_anything_is_built():
    record = predict(_case(model="mlp", compile="default"))
    assert record["status"] == "unpredictable" and "--compile default" in record["error"]
