"""Quantization-aware distillation (QAD): fine-tune a fake-quantized copy of the FP32 subnet to mimic it.

The loss is the KL divergence to the FP32 subnet's softened logits, plus (when the run cached them) the KL to the
teachers' α-weighted targets, on unlabeled pool images only. BatchNorm is folded (or frozen), activation ranges
come from the exporter's calibration images, weight ranges follow the weights. The result's float weights then go
through the target's own INT8 exporter (the usual "QAT, then PTQ with the learned weights" path).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgedistill.export.bn_fold import fold_bn
from edgedistill.export.fake_quant import (
    FakeQuantScheme,
    TensorFakeQuant,
    calibrate,
    fake_quant_layers,
    prepare,
    strip,
)
from edgedistill.export.qad_data import QADData
from edgedistill.recipe import QADSettings


@dataclass
class QADResult:
    """The fine-tuned fake-quant model (what the INT8 artifact computes) and its float weights for the exporter."""

    model: nn.Module
    float_model: nn.Module
    bn_folded: bool
    layers: int
    tensors: int  # add/mul inputs and outputs with their own fake quantizer
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def qad_losses(
    q_logits: torch.Tensor, fp32_logits: torch.Tensor, teacher_probs: torch.Tensor | None, settings: QADSettings
) -> dict[str, torch.Tensor]:
    """Named loss terms (each already weighted): `kd_fp32`, and `kd_teacher` when teacher targets are given."""
    t = settings.temperature
    log_q = torch.log_softmax(q_logits / t, 1)
    kl = nn.functional.kl_div
    losses = {"kd_fp32": kl(log_q, torch.softmax(fp32_logits / t, 1), reduction="batchmean") * t * t}
    if teacher_probs is not None and settings.teacher_weight > 0:
        losses["kd_teacher"] = settings.teacher_weight * kl(log_q, teacher_probs, reduction="batchmean") * t * t
    return losses


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)])


def quantization_aware_distill(
    subnet: nn.Module,
    data: QADData,
    scheme: FakeQuantScheme,
    settings: QADSettings,
    calibration: np.ndarray,
) -> QADResult:
    """Fine-tune a fake-quantized copy of `subnet` for `settings.steps` steps (CPU; `subnet` is left untouched).

    Args:
        subnet: The extracted FP32 subnet.
        data: Unlabeled pool images and optional teacher targets (`qad_data`).
        scheme: The target exporter's INT8 (`scheme_for`).
        calibration: The exporter's calibration images (NCHW float32): activation ranges before and after.
    """
    t0 = time.perf_counter()
    calib = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    folded, bn_folded = fold_bn(subnet.cpu(), calib[:8])
    folded.requires_grad_(False)
    student = prepare(copy.deepcopy(folded), scheme)
    student.requires_grad_(True)
    calibrate(student, calib)
    fp32 = _logits(folded, data.images)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    history: list[dict[str, float]] = []
    student.eval()  # BN (when not folded) keeps its running statistics: frozen, as QAT does near convergence
    for step in range(settings.steps):
        idx = torch.randint(len(data.images), (min(settings.batch, len(data.images)),), generator=gen)
        losses = qad_losses(
            student(data.images[idx]), fp32[idx], data.teacher_probs(idx, settings.temperature), settings
        )
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        if step == 0 or (step + 1) % 50 == 0 or step + 1 == settings.steps:
            history.append({"step": float(step + 1), **{k: round(float(v.detach()), 5) for k, v in losses.items()}})
    calibrate(student, calib)  # the exporter calibrates the fine-tuned weights on the same images
    student.requires_grad_(False)
    layers = sum(1 for _ in fake_quant_layers(student))
    tensors = sum(isinstance(m, TensorFakeQuant) for m in student.modules())
    return QADResult(student, strip(student), bn_folded, layers, tensors, time.perf_counter() - t0, history)
