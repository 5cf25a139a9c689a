"""Adapter for timm's `ResNet` (resnet18/34 with `BasicBlock`, resnet50/101 with `Bottleneck`).

The mid channels of every residual block are elastic: `BasicBlock`'s conv1 outputs (bn1, conv2 inputs);
`Bottleneck`'s conv1 outputs (bn1, conv2 inputs) and conv2 outputs (bn2, conv3 inputs). Stage outputs (every block's
last conv, the downsample shortcut, squeeze-excite on the block output) stay at full width: they are summed with the
residual, so narrowing them would mean narrowing the whole stage and its shortcut together.
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


def _mids(block: Any) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]]:
    """The block's elastic mid spaces: (conv name, the conv producing it, its BN, the conv consuming it)."""
    if hasattr(block, "conv3"):  # Bottleneck
        return [("conv1", block.conv1, block.bn1, block.conv2), ("conv2", block.conv2, block.bn2, block.conv3)]
    return [("conv1", block.conv1, block.bn1, block.conv2)]


@torch.no_grad()
def reorder_resnet_block(block: Any, perms: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Permute each mid space of a residual block (default: by the L1 norm of the consuming conv's weights).

    The producing conv's outputs, its BN and the consuming conv's inputs move together, so the block computes
    exactly the same function. A Bottleneck's two mid spaces are permuted independently.

    Returns:
        The permutation applied per mid space, keyed by the producing conv's name.
    """
    applied = {}
    for name, conv, bn, consumer in _mids(block):
        perm = perms[name] if perms is not None else None
        if perm is None:
            perm = torch.argsort(input_importance(consumer), descending=True, stable=True)
        take_conv_out(conv, perm)
        take_bn(bn, perm)
        take(consumer.weight, perm, 1)
        applied[name] = perm
    return applied


class ResNetAdapter(TimmAdapter):
    """Elastic mid channels of every `BasicBlock` / `Bottleneck`; one width per stage (layer1..layer4)."""

    stem = "conv1"
    classifier = "fc"
    examples = ("resnet18", "resnet50")

    def elastic_blocks(self, net: Any) -> dict[str, tuple[int, nn.Module]]:
        return {
            f"layer{s + 1}.{i}": (s, b)
            for s in range(4)
            if hasattr(net, f"layer{s + 1}")
            for i, b in enumerate(getattr(net, f"layer{s + 1}"))
        }

    def check(self, model: str, net: Any) -> None:
        for name, (_, block) in self.elastic_blocks(net).items():
            if not isinstance(block.aa, nn.Identity):  # anti-aliasing on the mid channels has per-channel filters
                raise unsupported(model, f"anti-aliasing in {name}")
            for conv_name, conv, bn, consumer in _mids(block):
                for c in (conv, consumer):
                    if c.groups != 1:
                        raise unsupported(model, f"grouped convs ({c.groups} groups) in {name}")
                if type(bn) is not nn.BatchNorm2d:
                    raise unsupported(model, f"a {type(bn).__name__} after {name}.{conv_name}")

    def slots(self, name: str, block: Any) -> dict[str, int]:
        return {f"{name}.{conv_name}": int(conv.out_channels) for conv_name, conv, _, _ in _mids(block)}

    def reorder(self, block: Any) -> None:
        reorder_resnet_block(block)

    def make_slim(self, name: str, block: Any) -> None:
        block.conv1 = SlimTimmConv2d(block.conv1, f"{name}.conv1")
        if hasattr(block, "conv3"):
            block.conv2 = SlimTimmConv2d(block.conv2, f"{name}.conv2")
            block.conv3 = SlimTimmConv2d(block.conv3)
        else:
            block.conv2 = SlimTimmConv2d(block.conv2)

    def shrink(self, name: str, block: Any, channels: Mapping[str, int]) -> None:
        mid1 = channels[f"{name}.conv1"]
        block.conv1 = resized_conv(block.conv1, block.conv1.in_channels, mid1)
        block.bn1 = resized_bn(block.bn1, mid1)
        if hasattr(block, "conv3"):
            mid2 = channels[f"{name}.conv2"]
            block.conv2 = resized_conv(block.conv2, mid1, mid2)
            block.bn2 = resized_bn(block.bn2, mid2)
            block.conv3 = resized_conv(block.conv3, mid2, block.conv3.out_channels)
        else:
            block.conv2 = resized_conv(block.conv2, mid1, block.conv2.out_channels)


TIMM_ADAPTERS.register("ResNet")(ResNetAdapter())
