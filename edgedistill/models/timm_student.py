"""`timm`: a pretrained timm inverted-residual network (Lite0, MobileNetV2, ...) as a slimmable bank.

Every inverted-residual block's expanded (mid) channels are elastic, scaled by its stage's multiplier (OFA
style); block outputs, the stem and the head stay at full width, so residuals are unchanged. Pretrained mid
channels are first sorted by importance (function-preserving), so narrow widths keep the strongest channels.
Width 1.0 everywhere is exactly the pretrained network (with a new classifier when `num_classes` differs).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.models.students import DEFAULT_WIDTH_CHOICES, STUDENTS, SlimmableBank
from edgedistill.models.timm_layers import make_slim, reorder_block, shrink_block

_FIELD = "student.options"


def _create(model: str, in_chans: int, num_classes: int) -> Any:
    """The timm net (typed Any: timm's blocks are reached by attribute)."""
    import timm
    from timm.models.efficientnet import EfficientNet

    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        raise ConfigError(f"{_FIELD}.model: unknown timm model '{model}'; close: {close}")
    net = timm.create_model(model, pretrained=False, in_chans=in_chans, num_classes=num_classes)
    if not isinstance(net, EfficientNet):
        raise ConfigError(
            f"{_FIELD}.model: '{model}' is a {type(net).__name__}, not a timm inverted-residual EfficientNet-style "
            "network (e.g. tf_efficientnet_lite0, mobilenetv2_100)"
        )
    return net


def read_pretrained(weights: str, model: str) -> dict[str, torch.Tensor]:
    """The state dict named by `weights`: `packaged:NAME` (an offline weight package) or a local file.

    Raises:
        ConfigError: Unknown packaged name, or packaged weights of another architecture.
        CheckpointError: Missing or unreadable file.
    """
    from edgedistill.teachers.weights import read_weights

    if weights.startswith("packaged:"):
        from edgedistill.data.packages import pkg_dir
        from edgedistill.teachers.zoo import _PACKAGED

        name = weights.removeprefix("packaged:")
        if name not in _PACKAGED:
            raise ConfigError(f"{_FIELD}.weights: unknown packaged weights '{name}'; known: {sorted(_PACKAGED)}")
        package, rel, arch, remap = _PACKAGED[name]
        if arch != model:
            raise ConfigError(f"{_FIELD}.weights: packaged:{name} holds '{arch}' weights, not '{model}'")
        path = pkg_dir(package) / rel
        return remap(_read(read_weights, path))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{_FIELD}.weights: {path}: no such file (a safetensors or torch state dict)")
    return _read(read_weights, path)


def _read(reader: Any, path: Path) -> dict[str, torch.Tensor]:
    try:
        state: dict[str, torch.Tensor] = reader(path)
    except CheckpointError as e:
        raise CheckpointError(f"{_FIELD}.weights: {e}") from None
    return state


def _pretrained_net(model: str, in_chans: int, weights: str) -> Any:
    """The timm net with `weights` loaded strictly (its own classifier size; the stem adapted to `in_chans`)."""
    from timm.models import adapt_input_conv

    state = dict(read_pretrained(weights, model))
    head = state.get("classifier.weight")
    net = _create(model, in_chans, int(head.shape[0]) if head is not None and head.ndim == 2 else 1000)
    stem = state.get("conv_stem.weight")
    if stem is not None and stem.ndim == 4 and stem.shape[1] != in_chans:
        state["conv_stem.weight"] = adapt_input_conv(in_chans, stem)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{_FIELD}.weights: {weights} does not fit timm '{model}' ({first})") from None
    return net


@STUDENTS.register("timm")
class TimmStudent(SlimmableBank):
    """A timm `EfficientNet`-class network; stage i's multiplier scales the mid channels of its blocks.

    Stages without an expanding block (the first, depthwise-separable one) are not elastic, so a width config
    has one value per stage that has inverted-residual blocks (6 for Lite0 and MobileNetV2).

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
    ) -> None:
        from timm.models._efficientnet_blocks import InvertedResidual

        net = _pretrained_net(model, in_chans, weights) if weights else _create(model, in_chans, num_classes)
        blocks: dict[str, Any] = {
            f"blocks.{s}.{i}": b
            for s, stage in enumerate(net.blocks)
            for i, b in enumerate(stage)
            if isinstance(b, InvertedResidual)
        }
        elastic = sorted({int(name.split(".")[1]) for name in blocks})
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
        slots = {n: (b.conv_pw.out_channels, elastic.index(int(n.split(".")[1]))) for n, b in blocks.items()}
        ch = self._init_channels(slots, channels, config)
        if weights:
            for block in blocks.values():
                reorder_block(block)
        self.num_features = int(net.num_features)
        old = net.classifier
        new = self.layers.classifier(self.num_features, num_classes)
        head_loaded = isinstance(old, nn.Linear) and old.weight.shape == new.weight.shape and not cosine_head
        if head_loaded:
            new.load_state_dict(old.state_dict())
        net.classifier = new
        self._pretrained_head = bool(weights) and head_loaded
        self._pretrained = bool(weights)
        if slim:
            make_slim(net, blocks, len(self.width_choices) if self.switchable_bn else 0)
        else:
            for name, block in blocks.items():
                shrink_block(block, ch[name])
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
        """Mid channels of each elastic stage's first block at `config`."""
        widths, first = self.slot_channels(config), dict[int, int]()
        for name, (_, stage) in self._slots.items():
            first.setdefault(stage, widths[name])
        return [first[i] for i in range(self.num_stages)]

    def feature_dim(self, config: Sequence[float] | None = None) -> int:
        """The pooled feature width: the head conv's, fixed at every config."""
        return self.num_features

    def classifier_layer(self) -> nn.Module:
        return self.net.classifier

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the timm net built from `weights`, but a classifier replaced for the task's classes."""
        if not self._pretrained:
            return []
        new = set() if self._pretrained_head else {id(p) for p in self.net.classifier.parameters()}
        return [p for p in self.net.parameters() if id(p) not in new]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.classifier(features)
