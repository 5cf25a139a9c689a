"""Batched random affine augmentation on float tensors (seeded, runs on the training device)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def affine_draws(n: int, gen: torch.Generator) -> torch.Tensor:
    """The (n, 4) uniform draws `random_affine` turns into per-image angle, scale and shifts."""
    return torch.rand(n, 4, generator=gen)


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator | None,
    degrees: float = 12.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    draws: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotate/scale/translate every image independently; border filled with the image's minimum value.

    Args:
        draws: `affine_draws` rows for these images (a data-parallel rank's share of the global batch's);
            drawn from `gen` when None.
    """
    if draws is None:
        assert gen is not None, "random_affine needs a generator or draws"
        draws = affine_draws(x.shape[0], gen)
    r = draws.to(x.device)
    ang = (r[:, 0] * 2 - 1) * math.radians(degrees)
    s = scale[0] + r[:, 1] * (scale[1] - scale[0])
    tx, ty = (r[:, 2] * 2 - 1) * translate * 2, (r[:, 3] * 2 - 1) * translate * 2
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - lo, grid, align_corners=False, padding_mode="zeros") + lo
