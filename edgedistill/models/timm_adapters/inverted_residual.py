"""Adapters for timm's inverted-residual networks: `EfficientNet` (Lite0, MobileNetV2, B0, ...) and `MobileNetV3`.

Each `InvertedResidual` block's expanded (mid) channels are elastic: the expansion conv's outputs and its BN, the
depthwise conv and its BN, squeeze-excite (its reduce conv's inputs and expand conv's outputs; the reduced width stays
full) and the projection conv's inputs. Block outputs, depthwise-separable and conv-bn-act blocks, the stem and the
head stay at full width, so residuals are unchanged. The two classes differ only in their head (MobileNetV3 pools
before its head conv), which `forward_head` handles, so one adapter serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edgedistill.models.timm_adapters.base import TIMM_ADAPTERS, TimmAdapter, unsupported
from edgedistill.models.timm_layers import (
    SlimTimmConv2d,
    input_importance,
    resized_bn,
    resized_conv,
    take,
    take_bn,
    take_conv_out,
)


def _has_se(block: Any) -> bool:
    return hasattr(block.se, "conv_reduce") and hasattr(block.se, "conv_expand")


def channel_importance(block: Any) -> torch.Tensor:
    """Importance of each mid channel: L1 norm of its projection-conv weights (how much it feeds the output)."""
    return input_importance(block.conv_pwl)


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
    take_bn(block.bn1, perm)
    take_bn(block.bn2, perm)
    take_conv_out(block.conv_pw, perm)
    take_conv_out(block.conv_dw, perm)
    if _has_se(block):
        take(block.se.conv_reduce.weight, perm, 1)
        take_conv_out(block.se.conv_expand, perm)
    take(block.conv_pwl.weight, perm, 1)
    return perm


class InvertedResidualAdapter(TimmAdapter):
    """Elastic mid channels of every `InvertedResidual` block; one width per stage that has such blocks."""

    def __init__(self, examples: tuple[str, ...]) -> None:
        self.examples = examples

    def elastic_blocks(self, net: Any) -> dict[str, tuple[int, nn.Module]]:
        from timm.models._efficientnet_blocks import InvertedResidual

        return {
            f"blocks.{s}.{i}": (s, b)
            for s, stage in enumerate(net.blocks)
            for i, b in enumerate(stage)
            if isinstance(b, InvertedResidual)
        }

    def check(self, model: str, net: Any) -> None:
        for name, (_, block) in self.elastic_blocks(net).items():
            if not isinstance(block.aa, nn.Identity):  # anti-aliasing on the mid channels has per-channel filters
                raise unsupported(model, f"anti-aliasing in {name}")

    def slots(self, name: str, block: Any) -> dict[str, int]:
        return {name: int(block.conv_pw.out_channels)}

    def reorder(self, block: Any) -> None:
        reorder_block(block)

    def make_slim(self, name: str, block: Any) -> None:
        block.conv_pw = SlimTimmConv2d(block.conv_pw, name)
        block.conv_dw = SlimTimmConv2d(block.conv_dw)
        if _has_se(block):
            block.se.conv_reduce = SlimTimmConv2d(block.se.conv_reduce)
            block.se.conv_expand = SlimTimmConv2d(block.se.conv_expand, name)
        block.conv_pwl = SlimTimmConv2d(block.conv_pwl)

    def shrink(self, name: str, block: Any, channels: Mapping[str, int]) -> None:
        mid = channels[name]
        block.conv_pw = resized_conv(block.conv_pw, block.conv_pw.in_channels, mid)
        block.bn1 = resized_bn(block.bn1, mid)
        block.conv_dw = resized_conv(block.conv_dw, mid, mid)
        block.bn2 = resized_bn(block.bn2, mid)
        if _has_se(block):
            rd = block.se.conv_reduce.out_channels
            block.se.conv_reduce = resized_conv(block.se.conv_reduce, mid, rd)
            block.se.conv_expand = resized_conv(block.se.conv_expand, rd, mid)
        block.conv_pwl = resized_conv(block.conv_pwl, mid, block.conv_pwl.out_channels)


TIMM_ADAPTERS.register("EfficientNet")(
    InvertedResidualAdapter(("tf_efficientnet_lite0", "mobilenetv2_100", "efficientnet_b0"))
)
TIMM_ADAPTERS.register("MobileNetV3")(InvertedResidualAdapter(("mobilenetv3_large_100",)))
