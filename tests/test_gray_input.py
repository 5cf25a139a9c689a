"""Gray images replicated to RGB: a colour-opponent stem whose BN was recalibrated on them collapses in INT8 (the
cause of the pretrained Lite0 collapse on upsampled digits, in small); folding the stem over its input channels is
exact on gray inputs and quantizes cleanly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.data import Preprocess, TaskData
from edgedistill.export.accuracy import onnx_predictor
from edgedistill.export.gray_input import fold_gray_stem, gray_input
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.export.torch2onnx import torch_to_onnx
from edgedistill.recipe import Quantization

SHAPE = (1, 3, 16, 16)
pytestmark = pytest.mark.usefixtures("one_thread")


def _gray(n: int, seed: int) -> torch.Tensor:
    """Sparse bright strokes on a constant background, replicated to 3 identical channels."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 16, 16, generator=g) > 0.85).float() * 2.0 - 0.4
    return x.expand(-1, 3, -1, -1).contiguous()


def _opponent_net() -> nn.Module:
    """A stem whose filters are colour-opponent (R ≈ −G: on gray input they sum to 1% of their size), BN
    recalibrated on gray images (so it scales those small sums up to unit variance), then a random head."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 10))  # fmt: skip
    with torch.no_grad():
        w = torch.randn(8, 1, 3, 3)
        net[0].weight.copy_(torch.cat([w, -w + 0.01 * torch.randn(8, 1, 3, 3), torch.zeros(8, 1, 3, 3)], 1))
    net[1].momentum = None
    net.train()
    with torch.no_grad():
        net(_gray(512, 1))
    return net.eval()


def _int8_agreement(net: nn.Module, tmp: Path, name: str) -> float:
    fp32 = torch_to_onnx(net, SHAPE, tmp / f"{name}.onnx")
    calib, x = _gray(128, 2).numpy(), _gray(512, 3).numpy()
    int8 = quantize_onnxruntime(fp32, tmp / f"{name}-int8.onnx", calib, Quantization(reduce_range=True))
    ref = onnx_predictor(fp32)(x).argmax(1)
    return 100.0 * float(np.mean(onnx_predictor(int8)(x).argmax(1) == ref))


def test_gray_stem_fold_is_exact_on_gray_inputs_and_fixes_int8(tmp_path: Path) -> None:
    net = _opponent_net()
    folded = _opponent_net()
    assert fold_gray_stem(folded) == "0"
    x, color = _gray(64, 4), torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)  # same function on gray images
        assert not torch.allclose(folded(color), net(color), atol=1e-2)  # (not on colour ones)
    before, after = _int8_agreement(net, tmp_path, "opponent"), _int8_agreement(folded, tmp_path, "folded")
    assert before < 70.0 and after > 95.0, (before, after)


def test_gray_input_needs_one_channel_images_normalised_alike() -> None:
    def data(channels: int) -> TaskData:
        return cast(TaskData, SimpleNamespace(test=SimpleNamespace(images=np.zeros((2, channels, 8, 8), np.uint8))))

    gray = Preprocess(16, 16, 3, (0.13,), (0.31,))
    assert gray_input(data(1), gray) and not gray_input(data(3), gray)
    assert not gray_input(data(1), Preprocess(16, 16, 3, (0.48, 0.45, 0.4), (0.23, 0.22, 0.22)))
    assert not gray_input(data(1), Preprocess(16, 16, 1, (0.13,), (0.31,)))
    assert fold_gray_stem(nn.Sequential(nn.Conv2d(1, 4, 3))) is None  # one input channel: nothing to fold
