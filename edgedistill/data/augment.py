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


def strong_augment(
    x: torch.Tensor,
    gen: torch.Generator,
    degrees: float = 30.0,
    translate: float = 0.2,
    scale: tuple[float, float] = (0.75, 1.25),
    cutout: float = 0.5,
) -> torch.Tensor:
    """FixMatch's strong view on unit-range images: a wide random affine, random brightness/contrast and a cutout.

    The cutout square (side `cutout` × the image side, at a random centre) is filled with the image's mean.
    """
    x = random_affine(x, gen, degrees, translate, scale)
    n, _, h, w = x.shape
    r = torch.rand(n, 4, generator=gen).to(x.device, x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (0.5 + r[:, 0]).view(n, 1, 1, 1)  # 0.5 .. 1.5
    brightness = ((r[:, 1] - 0.5) * 0.4).view(n, 1, 1, 1)  # -0.2 .. 0.2
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    cy, cx = (r[:, 2] * h).view(n, 1, 1), (r[:, 3] * w).view(n, 1, 1)
    hole = ((ys - cy).abs() < cutout * h / 2) & ((xs - cx).abs() < cutout * w / 2)
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(hole.unsqueeze(1), fill, x)
