"""Gray images fed to a multi-channel net: fold the stem's filters over their input channels (exact on gray inputs).

A pretrained ImageNet stem has colour-opponent filters whose R, G and B weights nearly cancel. On a gray image
replicated to RGB (MNIST digits upsampled for EfficientNet-Lite0) such a channel computes only the small sum of its
weights, and BN recalibrated on those images scales that up to unit variance. INT8 rounds each of the three weights
on its own, so the rounded sum is off by about as much as the sum itself, and BN amplifies the error (docs/results.md,
"INT8 of pretrained subnets on digits"). Each filter replaced by its mean over the input channels computes the same
outputs on gray inputs, and INT8 then rounds the sum itself.
"""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.data import Preprocess, TaskData


def gray_input(data: TaskData, pre: Preprocess) -> bool:
    """The model's channels all carry the same values: 1-channel images replicated, normalised alike per channel."""
    return pre.channels > 1 and data.test.images.shape[1] == 1 and len(set(pre.mean)) == 1 == len(set(pre.std))


@torch.no_grad()
def fold_gray_stem(model: nn.Module) -> str | None:
    """Replace the first convolution's filters by their mean over its input channels, in place.

    Returns:
        The convolution's name, or None when there is nothing to fold (one input channel, or grouped).
    """
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None))
    if conv is None or conv.in_channels < 2 or conv.groups != 1:
        return None
    conv.weight.copy_(conv.weight.mean(1, keepdim=True).expand_as(conv.weight))
    return name
