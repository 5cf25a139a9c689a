"""Batched random affine augmentation on float tensors (seeded, runs on the training device)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator,
    degrees: float = 12.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """Rotate/scale/translate every image independently; border filled with the image's minimum value."""
    n = x.shape[0]
    r = torch.rand(n, 4, generator=gen).to(x.device)
    ang = (r[:, 0] * 2 - 1) * math.radians(degrees)
    s = scale[0] + r[:, 1] * (scale[1] - scale[0])
    tx, ty = (r[:, 2] * 2 - 1) * translate * 2, (r[:, 3] * 2 - 1) * translate * 2
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - lo, grid, align_corners=False, padding_mode="zeros") + lo
