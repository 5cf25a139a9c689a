"""Elastic-width surgery on timm inverted-residual networks (`EfficientNet` class: Lite0, MobileNetV2, ...).

Three steps, all on the timm module tree in place, keeping every parameter name:

* `reorder_block`: a function-preserving permutation of a block's expanded (mid) channels, most important
  first, so a narrower width keeps the channels that matter most (OFA's channel sorting).
* `make_slim`: swap the block convs and every BatchNorm for slimmable ones that run on leading slices.
* `shrink_block`: resize a block to a fixed mid width, giving the plain network that `extract` fills.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, Conv2dSame
from timm.layers.padding import pad_same
from torch import nn

from edgedistill.models.slimmable import SlimBatchNorm2d, SlimConv2d


class SlimTimmConv2d(SlimConv2d):
    """`SlimConv2d` built from a timm conv, keeping its padding (static or TF 'same', as `Conv2dSame`) and bias.

    Args:
        conv: The conv to copy (weights included).
        slot: Bank slot that sets `out_active` (None: fixed outputs, or the input width if depthwise).
    """

    def __init__(self, conv: nn.Conv2d, slot: str | None = None) -> None:
        depthwise = conv.groups > 1
        if depthwise and conv.groups != conv.in_channels:
            raise ValueError(f"grouped conv with {conv.groups} groups is neither dense nor depthwise")
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size[0],
            conv.stride[0],
            depthwise=depthwise,
            bias=conv.bias is not None,
            slot=slot,
        )
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.same = isinstance(conv, Conv2dSame)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if self.bias is not None and conv.bias is not None:
                self.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, groups = self.sliced(x.shape[1])
        padding = self.padding
        if self.same:
            x = pad_same(x, list(self.kernel_size), list(self.stride), list(self.dilation))
            padding = (0, 0)
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)


class SlimBatchNormAct2d(SlimBatchNorm2d):
    """`SlimBatchNorm2d` + the dropout and activation of the timm `BatchNormAct2d` it is built from (same keys).

    Args:
        bn: The timm norm-act layer to copy (affine parameters, running stats, eps, momentum, act).
        switches: Private BNs for switchable BN, each starting as a copy of `bn`.
    """

    def __init__(self, bn: BatchNormAct2d, switches: int = 0) -> None:
        super().__init__(bn.num_features, switches)
        for target in (self, *(self.private or ())):
            assert isinstance(target, SlimBatchNorm2d)
            target.eps, target.momentum = bn.eps, bn.momentum
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                    getattr(target, name).copy_(getattr(bn, name))
        self.drop = bn.drop
        self.act = bn.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def _has_se(block: Any) -> bool:
    return hasattr(block.se, "conv_reduce") and hasattr(block.se, "conv_expand")


def _take(tensor: torch.Tensor, perm: torch.Tensor, dim: int) -> None:
    tensor.copy_(tensor.index_select(dim, perm.to(tensor.device)))


def channel_importance(block: Any) -> torch.Tensor:
    """Importance of each mid channel: L1 norm of its projection-conv weights (how much it feeds the output)."""
    return block.conv_pwl.weight.detach().abs().sum(dim=(0, 2, 3))


@torch.no_grad()
def reorder_block(block: Any, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Permute an inverted-residual block's mid channels (default: by `channel_importance`, descending).

    Expansion conv outputs + its BN, depthwise conv + BN, squeeze-excite (if any) and the projection conv's
    inputs move together, so the block computes exactly the same function.

    Returns:
        The permutation applied (new channel i is old channel perm[i]).
    """
    if perm is None:
        perm = torch.argsort(channel_importance(block), descending=True, stable=True)
    for bn in (block.bn1, block.bn2):
        for name in ("weight", "bias", "running_mean", "running_var"):
            _take(getattr(bn, name), perm, 0)
    _take(block.conv_pw.weight, perm, 0)
    _take(block.conv_dw.weight, perm, 0)
    if _has_se(block):
        _take(block.se.conv_reduce.weight, perm, 1)
        _take(block.se.conv_expand.weight, perm, 0)
        if block.se.conv_expand.bias is not None:
            _take(block.se.conv_expand.bias, perm, 0)
    _take(block.conv_pwl.weight, perm, 1)
    return perm


def make_slim(net: nn.Module, blocks: dict[str, Any], switches: int) -> None:
    """Make `net` a slimmable bank: each block of `blocks` (slot name → block) gets slimmable convs whose mid
    width follows its slot, and every `BatchNormAct2d` of `net` becomes a `SlimBatchNormAct2d`."""
    for slot, block in blocks.items():
        block.conv_pw = SlimTimmConv2d(block.conv_pw, slot)
        block.conv_dw = SlimTimmConv2d(block.conv_dw)
        if _has_se(block):
            block.se.conv_reduce = SlimTimmConv2d(block.se.conv_reduce)
            block.se.conv_expand = SlimTimmConv2d(block.se.conv_expand, slot)
        block.conv_pwl = SlimTimmConv2d(block.conv_pwl)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BatchNormAct2d):
                setattr(parent, name, SlimBatchNormAct2d(child, switches))


def _resized_conv(conv: nn.Conv2d, cin: int, cout: int) -> nn.Conv2d:
    new = copy.deepcopy(conv)
    depthwise = conv.groups > 1
    new.in_channels, new.out_channels, new.groups = cin, cout, (cin if depthwise else 1)
    new.weight = nn.Parameter(conv.weight.detach()[:cout, : (1 if depthwise else cin)].clone())
    if conv.bias is not None:
        new.bias = nn.Parameter(conv.bias.detach()[:cout].clone())
    return new


def _resized_bn(bn: nn.BatchNorm2d, c: int) -> nn.BatchNorm2d:
    new = copy.deepcopy(bn)
    new.num_features = c
    new.weight = nn.Parameter(bn.weight.detach()[:c].clone())
    new.bias = nn.Parameter(bn.bias.detach()[:c].clone())
    for name in ("running_mean", "running_var"):
        new.register_buffer(name, getattr(bn, name)[:c].clone())
    return new


def shrink_block(block: Any, mid: int) -> None:
    """Resize a plain inverted-residual block to `mid` expanded channels (weights are the leading slices)."""
    block.conv_pw = _resized_conv(block.conv_pw, block.conv_pw.in_channels, mid)
    block.bn1 = _resized_bn(block.bn1, mid)
    block.conv_dw = _resized_conv(block.conv_dw, mid, mid)
    block.bn2 = _resized_bn(block.bn2, mid)
    if _has_se(block):
        rd = block.se.conv_reduce.out_channels
        block.se.conv_reduce = _resized_conv(block.se.conv_reduce, mid, rd)
        block.se.conv_expand = _resized_conv(block.se.conv_expand, rd, mid)
    block.conv_pwl = _resized_conv(block.conv_pwl, mid, block.conv_pwl.out_channels)
