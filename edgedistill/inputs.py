"""Model inputs from a task's data: the budget's preprocessing and normalised images of the unlabeled pool.

Shared by train, search and export: calibration, BN recalibration and label-free checks draw their images here,
always from the target's own unlabeled pool (never test, never labels).
"""

from __future__ import annotations

import torch

from edgedistill.budget import ResolvedBudget
from edgedistill.data import Preprocess, TaskData


def preprocess_for(resolved: ResolvedBudget, data: TaskData) -> Preprocess:
    """Model input pipeline: the budget's input size/channels with the task's normalisation."""
    inp = resolved.budget.input
    mean, std = data.mean, data.std
    if len(mean) not in (1, inp.channels):  # RGB stats on a grey model input: use their average
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return Preprocess(inp.height, inp.width, inp.channels, tuple(mean), tuple(std))


def pool_images(
    data: TaskData, pre: Preprocess, n: int, seed: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """`n` normalised images drawn (seeded, without replacement) from the target's own unlabeled pool.

    Raises:
        DataError: the pool has fewer than `n` images.
    """
    return pre(torch.from_numpy(data.calibration(n, seed).images).to(device))


def calibration_batches(
    data: TaskData, pre: Preprocess, n: int, device: torch.device, seed: int = 0, batch: int | None = None
) -> list[torch.Tensor]:
    """Up to `n` normalised unlabeled-pool images (all of a smaller pool) in batches, for BN recalibration.

    `batch`: images per batch; None: 500 up to 64 px, fewer above (`images_per_batch`: bounded memory)."""
    from edgedistill.models.bn import images_per_batch

    batch = batch or images_per_batch(pre.height, pre.width)
    imgs = data.calibration(min(n, len(data.target_unlabeled)), seed).images
    return [pre(torch.from_numpy(imgs[i : i + batch]).to(device)) for i in range(0, len(imgs), batch)]
