"""Each teacher's own input pipeline: crop, invert, digit box + pad, channels, normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.config import StrictModel


class TeacherInput(StrictModel):
    """How target uint8 images are turned into this teacher's input.

    Attributes:
        size: teacher input height = width.
        channels: 1 or 3 (grey is replicated).
        mean, std: teacher normalisation.
        crop: keep the centre `crop` fraction of the frame first (1.0 = no crop).
        box: resize the digit to box×box and zero-pad to size (MNIST-style margin); None = full frame.
        invert: feed 1 - x (dark ink on light background domains).
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: float = 1.0
    box: int | None = None
    invert: bool = False

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.float() / 255.0
        if x.shape[1] == 3 and self.channels == 1:
            x = x.mean(1, keepdim=True)
        if self.crop < 1.0:
            h, w = x.shape[-2:]
            ch, cw = max(1, round(h * self.crop)), max(1, round(w * self.crop))
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        box = self.box or self.size
        x = F.interpolate(x, size=(box, box), mode="bilinear", align_corners=False, antialias=x.shape[-1] > box).clamp(
            0, 1
        )
        if self.invert:
            x = 1.0 - x
        if box < self.size:
            p = (self.size - box) // 2
            x = F.pad(x, (p, self.size - box - p, p, self.size - box - p))
        x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std
