"""Slimmable stand-ins for timm layers and the in-place surgery helpers every timm adapter shares.

* `SlimTimmConv2d` / `SlimBatchNormAct2d`: slimmable copies of a timm conv / norm-act layer (same parameter names).
* `slim_norms`: every BatchNorm of a net becomes a slimmable one (shared or switchable BN).
* `take`, `resized_conv`, `resized_bn`: permute a tensor in place, or cut a conv / BN to its leading channels
  (the plain network that `extract` fills).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.models.slimmable import SlimBatchNorm2d, SlimConv2d

if TYPE_CHECKING:
    from timm.layers import BatchNormAct2d

_BN_STATE = ("weight", "bias", "running_mean", "running_var")


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
        from timm.layers import Conv2dSame  # lazy, as every timm import here: timm takes seconds to import

        self.same = isinstance(conv, Conv2dSame)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if self.bias is not None and conv.bias is not None:
                self.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, groups = self.sliced(x.shape[1])
        padding = self.padding
        if self.same:
            from timm.layers.padding import pad_same

            x = pad_same(x, list(self.kernel_size), list(self.stride), list(self.dilation))
            padding = (0, 0)
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)


def _copy_bn(source: nn.BatchNorm2d, target: SlimBatchNorm2d) -> None:
    """Copy `source`'s eps, momentum, affine parameters and running stats into `target` and its private BNs."""
    for bn in (target, *(target.private or ())):
        assert isinstance(bn, SlimBatchNorm2d)
        bn.eps, bn.momentum = source.eps, source.momentum
        with torch.no_grad():
            for name in (*_BN_STATE, "num_batches_tracked"):
                getattr(bn, name).copy_(getattr(source, name))


class SlimBatchNormAct2d(SlimBatchNorm2d):
    """`SlimBatchNorm2d` + the dropout and activation of the timm `BatchNormAct2d` it is built from (same keys).

    Args:
        bn: The timm norm-act layer to copy (affine parameters, running stats, eps, momentum, act).
        switches: Private BNs for switchable BN, each starting as a copy of `bn`.
    """

    def __init__(self, bn: BatchNormAct2d, switches: int = 0) -> None:
        super().__init__(bn.num_features, switches)
        _copy_bn(bn, self)
        self.drop = bn.drop
        self.act = bn.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def _slim_bn(bn: nn.BatchNorm2d, switches: int) -> SlimBatchNorm2d:
    from timm.layers import BatchNormAct2d

    if isinstance(bn, BatchNormAct2d):
        return SlimBatchNormAct2d(bn, switches)
    slim = SlimBatchNorm2d(bn.num_features, switches)
    _copy_bn(bn, slim)
    return slim


def slim_norms(net: nn.Module, switches: int) -> None:
    """Swap every BatchNorm of `net` (timm `BatchNormAct2d` or plain `nn.BatchNorm2d`) for a slimmable copy.

    Every norm, full-width ones included, so switchable BN gives each uniform width private stats everywhere.
    """
    from timm.layers import BatchNormAct2d

    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BatchNormAct2d) or type(child) is nn.BatchNorm2d:
                setattr(parent, name, _slim_bn(child, switches))


def take(tensor: torch.Tensor, perm: torch.Tensor, dim: int) -> None:
    """Reorder `tensor` along `dim` in place: new index i holds old index `perm[i]`."""
    tensor.copy_(tensor.index_select(dim, perm.to(tensor.device)))


def take_bn(bn: nn.BatchNorm2d, perm: torch.Tensor) -> None:
    """Permute a BN's channels (affine parameters and running stats) in place."""
    for name in _BN_STATE:
        take(getattr(bn, name), perm, 0)


def take_conv_out(conv: nn.Conv2d, perm: torch.Tensor) -> None:
    """Permute a conv's output channels (filters and bias) in place."""
    take(conv.weight, perm, 0)
    if conv.bias is not None:
        take(conv.bias, perm, 0)


def input_importance(conv: nn.Conv2d) -> torch.Tensor:
    """Importance of each input channel of a dense conv: the L1 norm of its weights (how much it feeds the output)."""
    return conv.weight.detach().abs().sum(dim=(0, 2, 3))


def resized_conv(conv: nn.Conv2d, cin: int, cout: int) -> nn.Conv2d:
    """A copy of `conv` with `cin` inputs and `cout` outputs (the leading slices; depthwise stays depthwise)."""
    new = copy.deepcopy(conv)
    depthwise = conv.groups > 1
    new.in_channels, new.out_channels, new.groups = cin, cout, (cin if depthwise else 1)
    new.weight = nn.Parameter(conv.weight.detach()[:cout, : (1 if depthwise else cin)].clone())
    if conv.bias is not None:
        new.bias = nn.Parameter(conv.bias.detach()[:cout].clone())
    return new


def resized_bn(bn: nn.BatchNorm2d, c: int) -> nn.BatchNorm2d:
    """A copy of `bn` (timm norm-act layers included) over its first `c` channels."""
    new = copy.deepcopy(bn)
    new.num_features = c
    new.weight = nn.Parameter(bn.weight.detach()[:c].clone())
    new.bias = nn.Parameter(bn.bias.detach()[:c].clone())
    for name in ("running_mean", "running_var"):
        new.register_buffer(name, getattr(bn, name)[:c].clone())
    return new
