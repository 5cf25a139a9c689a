"""Memory layout of a model's conv weights, so inputs can match it (channels_last convs fed NCHW run ~1.5x slower)."""

from __future__ import annotations

import torch
from torch import nn


def memory_format(model: nn.Module) -> torch.memory_format:
    """`channels_last` when the model's conv weights are stored channels-last (a bank trained with
    `train.channels_last`, or a net moved there), else `contiguous_format`.

    A weight with one input channel or a 1×1 kernel is both layouts at once, so the first weight that tells them
    apart decides.
    """
    for p in model.parameters():
        if p.dim() == 4 and not (p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)):
            return (
                torch.channels_last if p.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            )
    return torch.contiguous_format
