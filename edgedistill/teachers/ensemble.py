"""Teacher predictions on target images (plain average of soft predictions; weighting comes later)."""

from __future__ import annotations

import numpy as np
import torch

from edgedistill.teachers.sources import Teacher


@torch.inference_mode()
def teacher_logits(teacher: Teacher, images: np.ndarray, batch: int = 1024) -> torch.Tensor:
    """Logits of one teacher for uint8 images (N, C, h, w), on CPU."""
    dev = next(teacher.model.parameters()).device
    out = [teacher.logits(torch.from_numpy(images[i : i + batch]).to(dev)).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


def average_soft_labels(teachers: list[Teacher], images: np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Mean over teachers of softmax(logits / T): (N, classes) probabilities."""
    probs = [torch.softmax(teacher_logits(t, images) / temperature, dim=1) for t in teachers]
    return torch.stack(probs).mean(0)
