"""`timm`: a pretrained timm network (EfficientNet, MobileNetV3 or ResNet class) as a slimmable bank.

The elastic channels of every block are scaled by its stage's multiplier (OFA style): the expanded (mid) channels of
inverted-residual blocks, the mid channels of ResNet blocks. Block and stage outputs, the stem and the head stay at
full width, so residuals are unchanged. What is elastic in each timm class is its adapter's business
(`timm_adapters`, keyed by class); this module does what is common: weights, classifier, norms. Pretrained channels
are first sorted by importance (function-preserving), so narrow widths keep the strongest channels. Width 1.0
everywhere is exactly the pretrained network (with a new classifier when `num_classes` differs).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from edgedistill.errors import ConfigError
from edgedistill.models.students import DEFAULT_WIDTH_CHOICES, STUDENTS, SlimmableBank
from edgedistill.models.timm_adapters import adapter_for
from edgedistill.models.timm_layers import slim_norms
from edgedistill.models.timm_weights import load_pretrained, read_pretrained

__all__ = ["TimmStudent", "read_pretrained"]


def _create(model: str, in_chans: int, num_classes: int) -> Any:
    """The timm net (typed Any: timm's blocks are reached by attribute)."""
    import timm

    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        raise ConfigError(f"student.options.model: unknown timm model '{model}'; close: {close}")
    return timm.create_model(model, pretrained=False, in_chans=in_chans, num_classes=num_classes)


@STUDENTS.register("timm")
class TimmStudent(SlimmableBank):
    """A timm `EfficientNet`, `MobileNetV3` or `ResNet`; stage i's multiplier scales the elastic channels of its blocks.

    Stages without elastic blocks (e.g. a first depthwise-separable stage, a last conv-bn-act stage) are not in the
    width config, so it has one value per stage that has some: 6 for Lite0 and MobileNetV2, 5 for MobileNetV3-Large,
    4 for ResNets (layer1..layer4).

    Args:
        num_classes: Classifier outputs (the pretrained classifier is kept if it has as many rows).
        in_chans: Input channels (a 3-channel pretrained stem is adapted).
        model: timm architecture name, built with `pretrained=False` (nothing is downloaded).
        weights: `packaged:NAME` or a local state-dict file; None: random init (how a saved bank is rebuilt).
        width_choices: Allowed per-stage multipliers.
        divisor: Channel rounding.
        slim: Build a slimmable bank (True) or a plain network (False).
        channels: Plain nets only: channels per slot, as from `slot_channels(config)`.
        config: Initial active config of a bank, or the config a plain net's channels come from.
        tri_head: Bank only: add the OSTC adaptation heads C_s, C_t (see `SlimmableBank`).
        switchable_bn: Bank only: a private BN per uniform width, each starting as the pretrained BN.
        cosine_head: Cosine-similarity classifier (see `SlimmableBank`).
        importance_order: Sort pretrained elastic channels by importance before slicing (False: keep the
            checkpoint's order; for comparisons, narrower widths then keep arbitrary channels).
    """

    family = "timm"

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        model: str = "tf_efficientnet_lite0",
        weights: str | None = None,
        width_choices: Sequence[float] = DEFAULT_WIDTH_CHOICES,
        divisor: int = 8,
        slim: bool = True,
        channels: Mapping[str, int] | None = None,
        config: Sequence[float] | None = None,
        tri_head: bool = False,
        switchable_bn: bool = False,
        cosine_head: bool = False,
        importance_order: bool = True,
    ) -> None:
        net = _create(model, in_chans, num_classes)
        adapter = adapter_for(model, net)
        head = load_pretrained(net, model, weights, adapter.stem, adapter.classifier) if weights else None
        blocks = adapter.elastic_blocks(net)
        elastic = sorted({stage for stage, _ in blocks.values()})
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            num_stages=len(elastic),
            width_choices=width_choices,
            divisor=divisor,
            slim=slim,
            tri_head=tri_head,
            switchable_bn=switchable_bn,
            cosine_head=cosine_head,
        )
        slots = {
            slot: (full, elastic.index(stage))
            for name, (stage, block) in blocks.items()
            for slot, full in adapter.slots(name, block).items()
        }
        ch = self._init_channels(slots, channels, config)
        if weights and importance_order:
            for _, block in blocks.values():
                adapter.reorder(block)
        self.num_features = int(net.head_hidden_size)  # after MobileNetV3's post-pool head conv, = num_features else
        self._classifier = adapter.classifier
        new = self.layers.classifier(self.num_features, num_classes)
        head_loaded = head is not None and not cosine_head and _fits(new, head)
        if head is not None and head_loaded:
            new.load_state_dict(head)
        setattr(net, adapter.classifier, new)
        self._pretrained_head = bool(weights) and head_loaded
        self._pretrained = bool(weights)
        for name, (_, block) in blocks.items():
            if slim:
                adapter.make_slim(name, block)
            else:
                adapter.shrink(name, block, ch)
        if slim:
            slim_norms(net, len(self.width_choices) if self.switchable_bn else 0)
        self.net: Any = net
        self._finish(
            {
                "num_classes": num_classes,
                "in_chans": in_chans,
                "model": model,
                "width_choices": list(self.width_choices),
                "divisor": divisor,
            }
        )

    def stage_channels(self, config: Sequence[float]) -> list[int]:
        """Elastic channels of each elastic stage's first slot (its first block's mid width) at `config`."""
        widths, first = self.slot_channels(config), dict[int, int]()
        for name, (_, stage) in self._slots.items():
            first.setdefault(stage, widths[name])
        return [first[i] for i in range(self.num_stages)]

    def feature_dim(self, config: Sequence[float] | None = None) -> int:
        """The pooled feature width: the head's, fixed at every config."""
        return self.num_features

    def classifier_layer(self) -> nn.Module:
        layer: nn.Module = getattr(self.net, self._classifier)
        return layer

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the timm net built from `weights`, but a classifier replaced for the task's classes."""
        if not self._pretrained:
            return []
        new = set() if self._pretrained_head else {id(p) for p in self.classifier_layer().parameters()}
        return [p for p in self.net.parameters() if id(p) not in new]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier_layer()(features)


def _fits(layer: nn.Module, head: dict[str, torch.Tensor]) -> bool:
    """Whether the pretrained classifier tensors `head` have exactly `layer`'s names and shapes."""
    own = layer.state_dict()
    return set(own) == set(head) and all(own[k].shape == head[k].shape for k in own)
