"""Slimmable layers: full-size weights that run on a leading slice of their channels.

A bank sets `out_active` on each `SlimConv2d`; input widths are read from the incoming tensor, so
a layer only needs to know how many filters to produce. Slicing returns views of the shared
parameters, so gradients of every width land in the same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class SlimConv2d(nn.Conv2d):
    """`nn.Conv2d` running on `weight[:out_active, :in]`, or on the first `in` channels if depthwise.

    Args:
        in_channels: Full input channels.
        out_channels: Full output channels.
        kernel_size: Square kernel size.
        stride: Stride.
        depthwise: One filter per channel; the active width follows the input.
        bias: Whether to learn a bias.
        slot: Name of the bank's channel slot that sets `out_active` (None: out width is fixed or
            follows the input for depthwise convs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        depthwise: bool = False,
        bias: bool = False,
        slot: str | None = None,
    ) -> None:
        if depthwise and in_channels != out_channels:
            raise ValueError(f"depthwise conv needs in_channels == out_channels, got {in_channels}, {out_channels}")
        groups = in_channels if depthwise else 1
        super().__init__(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
        self.depthwise = depthwise
        self.slot = slot
        self.out_active = out_channels

    def sliced(self, cin: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(weight, bias, groups) views for an input of `cin` channels at the current `out_active`."""
        if self.depthwise:
            cout, groups, weight = cin, cin, self.weight[:cin]
        else:
            cout, groups, weight = self.out_active, 1, self.weight[: self.out_active, :cin]
        return weight, self.bias[:cout] if self.bias is not None else None, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, groups = self.sliced(x.shape[1])
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class SlimBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose affine parameters and running stats are sliced to the input's channels.

    Mirrors `nn.BatchNorm2d.forward` (including `momentum=None`, a cumulative average over batches)
    but on views, so the running-stat update of the active slice writes into the shared buffers.

    Args:
        num_features: Full channel count.
        switches: Switchable BN (slimmable networks): this many private BNs (affine + stats), one per
            uniform width; `switch` picks the one in use (None: the shared BN, for non-uniform configs).
    """

    def __init__(self, num_features: int, switches: int = 0) -> None:
        super().__init__(num_features)
        self.private = nn.ModuleList(SlimBatchNorm2d(num_features) for _ in range(switches)) if switches else None
        self.switch: int | None = None

    def active(self) -> SlimBatchNorm2d:
        """The BN that normalises the current config: a private one when switched, else this shared one."""
        if self.private is None or self.switch is None:
            return self
        bn = self.private[self.switch]
        assert isinstance(bn, SlimBatchNorm2d)
        return bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.active()
        if bn is not self:
            return bn(x)
        self._check_input_dim(x)
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        running_mean = self.running_mean[:c] if self.running_mean is not None and track else None
        running_var = self.running_var[:c] if self.running_var is not None and track else None
        weight = self.weight[:c] if self.weight is not None else None
        bias = self.bias[:c] if self.bias is not None else None
        return F.batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, factor, self.eps)


class SlimLinear(nn.Linear):
    """Classifier `nn.Linear` with fixed outputs (classes) and in-features sliced to the input's width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[-1]], self.bias)


COSINE_SCALE = 16.0
"""Logit scale of cosine classifiers: logits = 16 · cos(x, w_c) (UDON's cosine-similarity heads)."""


class CosineLinear(nn.Linear):
    """Cosine-similarity classifier: `COSINE_SCALE` · normalise(x) · normalise(w_c) per class (no bias)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight[:, : x.shape[-1]]  # a bank's slice; the whole weight for a plain net
        return COSINE_SCALE * F.linear(unit_rows(x), unit_rows(w))


def unit_rows(t: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`F.normalize(t, dim=-1)` as a broadcast multiply: `F.normalize` exports an ONNX Expand whose shape ONNX Runtime's
    quantization pre-processing cannot infer, which failed the INT8 export of cosine heads."""
    return t * torch.rsqrt(t.pow(2).sum(-1, keepdim=True).clamp_min(eps * eps))


@dataclass(frozen=True)
class LayerFactory:
    """Builds either slimmable or plain layers, so one network definition yields the bank and its subnets.

    Attributes:
        slim: True for `Slim*` layers holding full-size weights, False for plain torch layers.
        bn_switches: Slim only: private BNs per BatchNorm (switchable BN), 0 for shared BN only.
        cosine_head: Classifiers are `CosineLinear` instead of linear layers.
    """

    slim: bool
    bn_switches: int = 0
    cosine_head: bool = False

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        slot: str | None = None,
        depthwise: bool = False,
    ) -> nn.Conv2d:
        """Bias-free square conv with 'same' padding; `slot` names the bank width that scales its outputs."""
        if self.slim:
            return SlimConv2d(in_channels, out_channels, kernel_size, stride, depthwise=depthwise, slot=slot)
        groups = in_channels if depthwise else 1
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)

    def bn(self, channels: int) -> nn.BatchNorm2d:
        """BatchNorm over `channels` (the full count for a slim layer, with `bn_switches` private BNs)."""
        return SlimBatchNorm2d(channels, self.bn_switches) if self.slim else nn.BatchNorm2d(channels)

    def linear(self, in_features: int, out_features: int) -> nn.Linear:
        """Linear layer with bias; a slim one slices only its in-features."""
        return SlimLinear(in_features, out_features) if self.slim else nn.Linear(in_features, out_features)

    def classifier(self, in_features: int, num_classes: int) -> nn.Linear:
        """A class head: cosine (`cosine_head`) or linear with bias; a slim one slices its in-features."""
        return CosineLinear(in_features, num_classes) if self.cosine_head else self.linear(in_features, num_classes)
