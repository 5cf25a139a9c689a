"""Training: losses, distillers, sandwich sampling, checkpoints, resume after a kill, device choice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from edgedistill.distill.amp import amp_dtype, resolve_device
from edgedistill.distill.checkpoint import list_checkpoints, load_latest, save_checkpoint
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distillers import DISTILLERS, StepBatch
from edgedistill.distill.losses import soft_kl, weighted_sum
from edgedistill.distill.sampler import sandwich_configs
from edgedistill.errors import BackendUnavailable, CheckpointError, RegistryError
from edgedistill.models import build_bank, load_bank

REPO = Path(__file__).resolve().parents[1]


def test_kd_golden_value() -> None:
    logits = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[0.5, 0.5]])
    p = torch.softmax(logits, 1)
    expected = (0.5 * (torch.log(torch.tensor(0.5)) - torch.log(p))).sum()
    assert torch.allclose(soft_kl(logits, target), expected)
    assert torch.allclose(soft_kl(logits, torch.softmax(logits, 1)), torch.tensor(0.0), atol=1e-7)
    assert torch.allclose(soft_kl(logits * 2, target, temperature=2.0), expected * 4)


def test_weighted_sum_keeps_terms() -> None:
    t = {"ce": torch.tensor(2.0), "kd": torch.tensor(3.0)}
    assert weighted_sum(t, {"ce": 0.5}).item() == 4.0


def _batch(grad: bool = True) -> StepBatch:
    zl = torch.randn(4, 10, requires_grad=grad)
    zu = torch.randn(6, 10, requires_grad=grad)
    probs = [torch.softmax(torch.randn(6, 10), 1) for _ in range(2)]
    return StepBatch(zl, torch.randint(0, 10, (4,)), zu, torch.softmax(torch.randn(10, 10), 1), teacher_probs=probs)


_TWO_TEACHERS = SimpleNamespace(alphas=[0.5, 0.5], dims=[6, 4])


def test_average_kd_terms_and_gradients() -> None:
    d = DISTILLERS.get("average-kd")(TrainConfig(), _TWO_TEACHERS)
    b = _batch()
    largest = d.terms(0, b)
    assert set(largest) == {"ce", "kd"}
    weighted_sum(largest, d.weights).backward()
    assert b.logits_labeled.grad is not None and b.logits_unlabeled.grad is not None
    other = d.terms(1, _batch())
    assert set(other) == {"ce"} and d.bank_distillation  # widths > 0 learn from the bank loss (trainer)
    only_bank = DISTILLERS.get("average-kd")(TrainConfig(sup_all_widths=False), _TWO_TEACHERS).terms(2, _batch())
    assert only_bank == {}


def test_ce_only_and_unknown_distiller() -> None:
    d = DISTILLERS.get("ce-only")(TrainConfig())
    assert not d.uses_teachers and not d.bank_distillation and set(d.terms(0, _batch())) == {"ce"}
    with pytest.raises(RegistryError, match="did you mean 'average-kd'"):
        DISTILLERS.get("averag-kd")


def test_sandwich_configs() -> None:
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16))
    cfgs = sandwich_configs(bank, 4, torch.Generator().manual_seed(0))
    assert cfgs[0] == bank.largest_config() and cfgs[1] == bank.smallest_config() and len(cfgs) == 4
    assert cfgs == sandwich_configs(bank, 4, torch.Generator().manual_seed(0))


def test_checkpoints_keep_last_skip_unfinished_refuse_tampered(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.ones(2) * step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002.pt", "step-000003.pt"]
    assert sorted(p.name for p in tmp_path.glob("*.sha256")) == ["step-000002.pt.sha256", "step-000003.pt.sha256"]
    (tmp_path / "step-000003.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=r"step-000003\.pt: sha256 mismatch"):
        load_latest(tmp_path)
    (tmp_path / "step-000003.pt.sha256").unlink()  # killed between the .pt and its sidecar: an unfinished write
    assert load_latest(tmp_path)["step"] == 2
    (tmp_path / "step-000002.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_latest(tmp_path)
    assert load_latest(tmp_path / "none") is None


def test_device_selection() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert amp_dtype("auto", torch.device("cpu")) is None
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(BackendUnavailable, match="needs a CUDA device"):
            amp_dtype("bf16", torch.device("cpu"))
    with pytest.raises(BackendUnavailable, match="expected cpu, cuda"):
        resolve_device("tpu")


def test_trained_run_outputs(trained_run: Path) -> None:
    import json

    s = json.loads((trained_run / "train.json").read_text())
    assert set(s["width_accuracy"]) == {"0.25", "0.5", "0.75", "1.0"}
    assert s["width_accuracy"]["1.0"] > 60.0  # 60 CPU steps from 100 labels + teachers
    chosen = s["chosen"]
    assert chosen["macs"] <= 12e6 and chosen["params"] <= 0.15e6  # demo-cpu limits
    assert load_bank(trained_run / "bank.safetensors").family == "resnet_cifar"
    assert (trained_run / "subnet.safetensors").is_file() and (trained_run / "search.json").is_file()


def _train_cmd(task: Path, out: Path, *extra: str, budget: Path = REPO / "budgets" / "demo-cpu.yaml") -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgedistill",
        "train",
        "--budget",
        str(budget),
        "--task",
        str(task),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_resume_after_sigkill(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: tiny\ndata: {source: mnist, labels_per_class: 2, unlabeled: 300, test: 200}\n"
        "teachers: [{source: ccexam:usps}]\n"
        "student: {family: resnet_cifar, options: {base_channels: [8, 16, 16]}}\n"
        "train: {steps: 400, checkpoint_every: 5, batch_labeled: 8, batch_unlabeled: 16, bn_calibration_images: 100}\n"
    )
    out = tmp_path / "run"
    # The demo budget on an ARM device: the width search ranks by MACs without timing exports here (what this test
    # checks is the checkpoint and resume, not the search).
    arm = tmp_path / "arm.yaml"
    arm.write_text((REPO / "budgets" / "demo-cpu.yaml").read_text().replace("family: x86", "family: arm"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_train_cmd(task, out, budget=arm), cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_checkpoints(out / "checkpoint")) < 2 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_latest(out / "checkpoint")["step"]
    assert 0 < killed_at < 400
    again = subprocess.run(_train_cmd(task, out, budget=arm), cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # an existing run is never silently replaced
    done = subprocess.run(
        _train_cmd(task, out, "--resume", "--steps", str(killed_at + 10), budget=arm),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    import json

    s = json.loads((out / "train.json").read_text())
    assert s["resumed_from"] == killed_at and s["steps"] == killed_at + 10
    bank = load_bank(out / "bank.safetensors")
    assert bank(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
