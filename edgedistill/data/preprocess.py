"""uint8 images → normalised float model input at the budget's size (done per batch, on device)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preprocess:
    """Scale to [0,1], resize, adapt channels, normalise. Recorded in the export manifest."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, h, w) → float [0,1] (N, channels, height, width)."""
        x = x.float().div_(255.0)
        if x.shape[-2:] != (self.height, self.width):
            shrink = x.shape[-1] > self.width
            x = F.interpolate(
                x, size=(self.height, self.width), mode="bilinear", align_corners=False, antialias=shrink
            ).clamp_(0, 1)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        return x

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """[0,1] input → (x - mean) / std with per-channel stats broadcast to `channels`."""
        mean = torch.tensor(self.mean, device=x01.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x01.device).view(1, -1, 1, 1)
        return (x01 - mean) / std

    def scaled(self, scale: float) -> Preprocess:
        """The same preprocessing at `scale` × the input side (at least 8 px), for progressive resizing."""
        if scale == 1.0:
            return self
        return replace(self, height=max(8, round(self.height * scale)), width=max(8, round(self.width * scale)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.to_unit(x))

    def manifest(self) -> dict[str, object]:
        """How a device must preprocess raw 8-bit images for the exported model."""
        mean = self.mean * self.channels if len(self.mean) == 1 else self.mean
        std = self.std * self.channels if len(self.std) == 1 else self.std
        return {
            "scale": 1 / 255,
            "mean": list(mean),
            "std": list(std),
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "resize": "bilinear",
        }
