"""CUDA training path: AMP autocast, channels_last, same code as CPU. Skipped without CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgedistill.distill.amp import amp_dtype, resolve_device
from edgedistill.models import extract, load_bank

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.gpu


def test_auto_device_and_amp_on_cuda() -> None:
    dev = resolve_device("auto")
    assert dev.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp_dtype("auto", dev) == expected


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_train_on_cuda_with_amp(tmp_path: Path, small_task: Path, amp: str) -> None:
    from edgedistill.pipeline.train import train_run

    task = tmp_path / "task.yaml"
    task.write_text(small_task.read_text().replace("channels_last: true}", f"channels_last: true, amp: {amp}}}"))
    s = train_run(REPO / "budgets" / "demo-cpu.yaml", task, tmp_path / "run", device="cuda", show_progress=False)
    assert s["device"].startswith("cuda")
    assert all(v == v for row in s["history"] for v in row.values())  # no NaN in any logged loss
    assert s["width_accuracy"]["1.0"] > 60.0
    bank = load_bank(tmp_path / "run" / "bank.safetensors")
    net = extract(bank, bank.largest_config())
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(net(x), net.cuda()(x.cuda()).cpu(), atol=1e-3)
    assert json.loads((tmp_path / "run" / "search.json").read_text())["chosen"]["macs"] <= 12e6
