"""`mobilenet`: a MobileNetV2-like student for 224 px inputs (inverted residuals, ReLU6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from edgedistill.models.slimmable import LayerFactory
from edgedistill.models.students import DEFAULT_WIDTH_CHOICES, STUDENTS, SlimmableBank


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise → 1×1 linear projection; residual when stride 1 and same slot/width.

    `hidden_slot=None` means no expansion (ratio 1): the depthwise conv runs on the input channels.
    """

    def __init__(
        self,
        layers: LayerFactory,
        in_ch: int,
        hidden_ch: int,
        out_ch: int,
        stride: int,
        *,
        hidden_slot: str | None,
        out_slot: str,
        residual: bool,
        act_layer: type[nn.Module],
    ) -> None:
        super().__init__()
        self.has_residual = residual
        self.conv_pw: nn.Module = nn.Identity()
        self.bn1: nn.Module = nn.Identity()
        self.act1: nn.Module = nn.Identity()
        if hidden_slot is not None:
            self.conv_pw = layers.conv(in_ch, hidden_ch, 1, slot=hidden_slot)
            self.bn1 = layers.bn(hidden_ch)
            self.act1 = act_layer(inplace=True)
        self.conv_dw = layers.conv(hidden_ch, hidden_ch, 3, stride, depthwise=True)
        self.bn2 = layers.bn(hidden_ch)
        self.act2 = act_layer(inplace=True)
        self.conv_pwl = layers.conv(hidden_ch, out_ch, 1, slot=out_slot)
        self.bn3 = layers.bn(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.act2(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_residual else out


@STUDENTS.register("mobilenet")
class MobileNetStudent(SlimmableBank):
    """MobileNetV2-like net; stage i's multiplier scales its output and expansion channels.

    The stem follows stage 0's multiplier and the 1×1 head conv the last stage's.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input channels.
        stem_channels: Full output channels of the 3×3 stride-2 stem.
        stage_channels: Full output channels per stage.
        blocks: Inverted-residual blocks per stage.
        strides: Stride of each stage's first block.
        expand_ratios: Expansion ratio per stage (1: no expansion conv).
        head_channels: Full output channels of the 1×1 head conv.
        act_layer: timm activation name.
        width_choices: Allowed per-stage multipliers.
        divisor: Channel rounding.
        slim: Build a slimmable bank (True) or a plain network (False).
        channels: Plain nets only: channels per slot, as from `slot_channels(config)`.
        config: Initial active config of a bank, or the config a plain net's channels come from.
        tri_head: Bank only: add the OSTC adaptation heads C_s, C_t (see `SlimmableBank`).
        switchable_bn: Bank only: a private BN per uniform width (see `SlimmableBank`).
        cosine_head: Cosine-similarity classifier (see `SlimmableBank`).
    """

    family = "mobilenet"

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        stem_channels: int = 32,
        stage_channels: Sequence[int] = (16, 24, 32, 64, 96, 160, 320),
        blocks: Sequence[int] = (1, 2, 2, 3, 2, 2, 1),
        strides: Sequence[int] = (1, 2, 2, 2, 1, 2, 1),
        expand_ratios: Sequence[int] = (1, 6, 6, 6, 6, 6, 6),
        head_channels: int = 1280,
        act_layer: str = "relu6",
        width_choices: Sequence[float] = DEFAULT_WIDTH_CHOICES,
        divisor: int = 8,
        slim: bool = True,
        channels: Mapping[str, int] | None = None,
        config: Sequence[float] | None = None,
        tri_head: bool = False,
        switchable_bn: bool = False,
        cosine_head: bool = False,
    ) -> None:
        n = len(stage_channels)
        if not n or not n == len(blocks) == len(strides) == len(expand_ratios):
            raise ValueError("stage_channels, blocks, strides and expand_ratios need one entry per stage")
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            num_stages=n,
            width_choices=width_choices,
            divisor=divisor,
            slim=slim,
            tri_head=tri_head,
            switchable_bn=switchable_bn,
            cosine_head=cosine_head,
        )
        from timm.layers import get_act_layer  # lazy: importing timm takes seconds

        act = get_act_layer(act_layer)
        # Full channel counts per block, needed to size the expansion slots before building.
        slots: dict[str, tuple[int, int]] = {"stem": (int(stem_channels), 0)}
        plan = []
        in_full, in_slot = int(stem_channels), "stem"
        for i, (c, nb, s, t) in enumerate(zip(stage_channels, blocks, strides, expand_ratios, strict=True)):
            out_slot = f"stages.{i}"
            slots[out_slot] = (int(c), i)
            for b in range(nb):
                hidden_slot = f"stages.{i}.{b}.hidden" if t != 1 else None
                if hidden_slot is not None:
                    slots[hidden_slot] = (in_full * int(t), i)
                stride = s if b == 0 else 1
                residual = stride == 1 and in_slot == out_slot and in_full == int(c)
                plan.append((i, in_slot, hidden_slot, out_slot, stride, residual))
                in_full, in_slot = int(c), out_slot
        slots["head"] = (int(head_channels), n - 1)
        ch = self._init_channels(slots, channels, config)
        make = self.layers

        self.stem = nn.Sequential(make.conv(in_chans, ch["stem"], 3, 2, slot="stem"), make.bn(ch["stem"]), act())
        stages: list[list[nn.Module]] = [[] for _ in range(n)]
        for i, in_slot, hidden_slot, out_slot, stride, residual in plan:
            hidden = ch[hidden_slot] if hidden_slot is not None else ch[in_slot]
            block = InvertedResidual(
                make,
                ch[in_slot],
                hidden,
                ch[out_slot],
                stride,
                hidden_slot=hidden_slot,
                out_slot=out_slot,
                residual=residual,
                act_layer=act,
            )
            stages[i].append(block)
        self.stages = nn.Sequential(*(nn.Sequential(*s) for s in stages))
        self.head = nn.Sequential(
            make.conv(ch[f"stages.{n - 1}"], ch["head"], 1, slot="head"), make.bn(ch["head"]), act()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = ch["head"]
        self.classifier = make.classifier(ch["head"], num_classes)
        self._finish(
            {
                "num_classes": num_classes,
                "in_chans": in_chans,
                "stem_channels": int(stem_channels),
                "stage_channels": [int(c) for c in stage_channels],
                "blocks": [int(b) for b in blocks],
                "strides": [int(s) for s in strides],
                "expand_ratios": [int(t) for t in expand_ratios],
                "head_channels": int(head_channels),
                "act_layer": act_layer,
                "width_choices": list(self.width_choices),
                "divisor": divisor,
            }
        )

    def _feature_slot(self) -> str:
        return "head"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.pool(x).flatten(1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)
