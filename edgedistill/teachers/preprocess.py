"""Each teacher's own input pipeline: crop or resize + centre crop, invert, digit box, channels, normalisation."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from edgedistill.config import StrictModel


class TeacherInput(StrictModel):
    """How target uint8 images are turned into this teacher's input.

    Attributes:
        size: teacher input height = width.
        channels: 1 or 3 (grey is replicated, RGB is averaged for a grey teacher).
        mean, std: teacher normalisation.
        crop: keep the centre `crop` fraction of the frame first (1.0 = no crop).
        box: resize the digit to box×box and zero-pad to size (MNIST-style margin); None = full frame.
        invert: feed 1 - x (dark ink on light background domains).
        resize: ImageNet style: resize the short side to `resize`, then centre-crop size×size (None = squash to size).
        interpolation: resize filter (antialiased when shrinking).
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: float = 1.0
    box: int | None = None
    invert: bool = False
    resize: int | None = None
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.float() / 255.0
        if x.shape[1] == 3 and self.channels == 1:
            x = x.mean(1, keepdim=True)
        if self.crop < 1.0:
            x = _centre_crop(x, round(x.shape[-2] * self.crop), round(x.shape[-1] * self.crop))
        if self.resize is not None:
            h, w = x.shape[-2:]
            scale = self.resize / min(h, w)
            x = self._interpolate(x, (max(self.size, round(h * scale)), max(self.size, round(w * scale))))
            x = _centre_crop(x, self.size, self.size)
            box = self.size
        else:
            box = self.box or self.size
            x = self._interpolate(x, (box, box))
        if self.invert:
            x = 1.0 - x
        if box < self.size:
            p = (self.size - box) // 2
            x = F.pad(x, (p, self.size - box - p, p, self.size - box - p))
        x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def _interpolate(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == hw:
            return x
        shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
        x = F.interpolate(x, size=hw, mode=self.interpolation, align_corners=False, antialias=shrink)
        return x.clamp(0, 1)


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + max(1, h), left : left + max(1, w)]
