"""`resnet_cifar`: a small CIFAR-style ResNet (3×3 stride-1 stem, BasicBlocks) for inputs of ≤ 64 px."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from edgedistill.models.slimmable import LayerFactory
from edgedistill.models.students import DEFAULT_WIDTH_CHOICES, STUDENTS, SlimmableBank


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers plus a shortcut; a 1×1 conv-BN projection when the shape or width slot changes."""

    def __init__(self, layers: LayerFactory, in_ch: int, out_ch: int, stride: int, slot: str, project: bool) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_ch, out_ch, 3, stride, slot=slot)
        self.bn1 = layers.bn(out_ch)
        self.conv2 = layers.conv(out_ch, out_ch, 3, slot=slot)
        self.bn2 = layers.bn(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if project:
            self.shortcut = nn.Sequential(layers.conv(in_ch, out_ch, 1, stride, slot=slot), layers.bn(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


@STUDENTS.register("resnet_cifar")
class ResNetCifar(SlimmableBank):
    """CIFAR-style ResNet; the stem and every layer of stage i use stage i's width multiplier.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels.
        base_channels: Full output channels per stage.
        blocks: BasicBlocks per stage.
        strides: Stride of each stage's first block.
        width_choices: Allowed per-stage multipliers.
        divisor: Channel rounding.
        slim: Build a slimmable bank (True) or a plain network (False).
        channels: Plain nets only: channels per slot (`stages.i`), as from `slot_channels(config)`.
        config: Initial active config of a bank, or the config a plain net's channels come from.
        tri_head: Bank only: add the OSTC adaptation heads C_s, C_t (see `SlimmableBank`).
        switchable_bn: Bank only: a private BN per uniform width (see `SlimmableBank`).
        cosine_head: Cosine-similarity classifier (see `SlimmableBank`).
    """

    family = "resnet_cifar"

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        base_channels: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
        strides: Sequence[int] = (1, 2, 2),
        width_choices: Sequence[float] = DEFAULT_WIDTH_CHOICES,
        divisor: int = 8,
        slim: bool = True,
        channels: Mapping[str, int] | None = None,
        config: Sequence[float] | None = None,
        tri_head: bool = False,
        switchable_bn: bool = False,
        cosine_head: bool = False,
    ) -> None:
        if not len(base_channels) == len(blocks) == len(strides) or not base_channels:
            raise ValueError("base_channels, blocks and strides need one entry per stage")
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            num_stages=len(base_channels),
            width_choices=width_choices,
            divisor=divisor,
            slim=slim,
            tri_head=tri_head,
            switchable_bn=switchable_bn,
            cosine_head=cosine_head,
        )
        slots = {f"stages.{i}": (int(c), i) for i, c in enumerate(base_channels)}
        ch = self._init_channels(slots, channels, config)
        make = self.layers

        self.stem = nn.Sequential(make.conv(in_chans, ch["stages.0"], 3, slot="stages.0"), make.bn(ch["stages.0"]))
        self.stem_act = nn.ReLU(inplace=True)
        in_ch, in_slot = ch["stages.0"], "stages.0"
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, strides, strict=True)):
            slot, out_ch = f"stages.{i}", ch[f"stages.{i}"]
            stage = []
            for b in range(n):
                s = stride if b == 0 else 1
                # Different slots may be active at different widths, so they never share an identity shortcut.
                project = s != 1 or in_slot != slot or in_ch != out_ch
                stage.append(BasicBlock(make, in_ch, out_ch, s, slot, project))
                in_ch, in_slot = out_ch, slot
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch
        self.classifier = make.classifier(in_ch, num_classes)
        self._finish(
            {
                "num_classes": num_classes,
                "in_chans": in_chans,
                "base_channels": [int(c) for c in base_channels],
                "blocks": [int(b) for b in blocks],
                "strides": [int(s) for s in strides],
                "width_choices": list(self.width_choices),
                "divisor": divisor,
            }
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem_act(self.stem(x)))
        return self.pool(x).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)
