"""Top-1 accuracy of a model (bank at a config, or a plain net) on uint8 images."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edgedistill.models.layout import memory_format


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: np.ndarray,
    pre: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch: int = 1000,
) -> np.ndarray:
    """Arg-max class per image."""
    was_training = model.training
    model.eval()
    fmt = memory_format(model)  # the weights' layout: a channels_last net fed NCHW images runs ~1.5x slower
    out = []
    for i in range(0, len(images), batch):
        x = pre(torch.from_numpy(images[i : i + batch]).to(device)).contiguous(memory_format=fmt)
        out.append(model(x).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def accuracy(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    pre: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch: int = 1000,
) -> float:
    """Top-1 accuracy in percent."""
    return float((predict(model, images, pre, device, batch) == labels).mean() * 100.0)
