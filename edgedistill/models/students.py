"""Slimmable student banks: the base class, the `STUDENTS` registry and `build_bank`.

A family subclass declares its channel *slots* (name → full channel count and the stage whose
multiplier scales it) and builds its layers through a `LayerFactory`. With `slim=True` the layers
hold full-size weights and `set_config` picks the active widths; with `slim=False` the same code
builds a plain network from explicit per-slot channel counts, with identical module names, which
is what `extract` relies on to copy weights by name.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from edgedistill.models.slimmable import LayerFactory, SlimBatchNorm2d, SlimConv2d
from edgedistill.registry import Registry

WidthConfig = tuple[float, ...]
"""One width multiplier per stage, each one of the bank's `width_choices`."""

DEFAULT_WIDTH_CHOICES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


@functools.cache
def _make_divisible(value: float, divisor: int) -> int:
    """timm's channel rounding (imported here: timm takes seconds to import and scratch banks need nothing else;
    cached: a bank asks for the same few roundings thousands of times while a search sets configs)."""
    from timm.layers import make_divisible

    return int(make_divisible(value, divisor))


class SlimmableBank(nn.Module):
    """Base of every student family: a weight-sharing bank (`slim=True`) or a plain subnet (`slim=False`).

    Subclasses call `super().__init__`, then `_init_channels(slots, channels, config)`, build their
    layers with `self.layers`, and finally call `_finish()`.

    Attributes:
        family: Registry name of the family.
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        width_choices: Allowed per-stage multipliers, ascending.
        divisor: Active channel counts are rounded to a multiple of this.
        num_stages: Length of a width config.
        slim: Whether this is a bank (slimmable layers) or a plain network.
        num_features: Full width of the pooled feature vector.
        tri_head: OSTC (SlimDA): besides the deployed classifier C_a (`classifier`), two adaptation heads
            `adapt_heads["s"]` (C_s, supervised) and `adapt_heads["t"]` (C_t, target pseudo-labels) on the
            same features. Training only; `extract` builds the subnet with C_a alone.
        switchable_bn: Bank only: a private BN (affine + stats) per uniform width, used whenever the
            active config is uniform; other configs use the shared BN (recalibrate it before use).
        cosine_head: Cosine-similarity classifier heads (UDON) instead of linear ones; kept by `extract`.
    """

    family: str = ""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        num_stages: int,
        width_choices: Sequence[float],
        divisor: int,
        slim: bool,
        tri_head: bool = False,
        switchable_bn: bool = False,
        cosine_head: bool = False,
    ) -> None:
        super().__init__()
        choices = tuple(sorted(float(w) for w in width_choices))
        if not choices or any(not 0.0 < w <= 1.0 for w in choices) or len(set(choices)) != len(choices):
            raise ValueError(f"width_choices must be distinct values in (0, 1], got {tuple(width_choices)}")
        if divisor < 1:
            raise ValueError(f"divisor must be >= 1, got {divisor}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_stages = num_stages
        self.width_choices = choices
        self.divisor = divisor
        self.slim = slim
        self.switchable_bn = switchable_bn and slim
        self.cosine_head = cosine_head
        self.layers = LayerFactory(slim, len(choices) if self.switchable_bn else 0, cosine_head)
        self.num_features = 0
        self._slots: dict[str, tuple[int, int]] = {}
        self._channels: dict[str, int] = {}
        self._config: WidthConfig = self.largest_config()
        self._kwargs: dict[str, Any] = {}
        self.tri_head = tri_head
        self.adapt_heads: nn.ModuleDict | None = None

    # ---- construction helpers for subclasses -------------------------------------------------

    def _init_channels(
        self,
        slots: Mapping[str, tuple[int, int]],
        channels: Mapping[str, int] | None,
        config: Sequence[float] | None,
    ) -> dict[str, int]:
        """Record the slots and return the channel count each layer is built with."""
        self._slots = dict(slots)
        if config is not None:
            self._config = self._validate(config)
        if self.slim:
            if channels is not None:
                raise ValueError("a slimmable bank is built at full width; pass `channels` only with slim=False")
            self._channels = {name: full for name, (full, _) in self._slots.items()}
        elif channels is None:
            self._channels = self.slot_channels(self._config)
        else:
            if config is None:
                raise ValueError("a plain net built from explicit `channels` needs the `config` they come from")
            if set(channels) != set(self._slots):
                raise ValueError(f"channels must have exactly the slots {sorted(self._slots)}, got {sorted(channels)}")
            self._channels = {name: int(channels[name]) for name in self._slots}
        return dict(self._channels)

    def _finish(self, kwargs: dict[str, Any]) -> None:
        """Store the constructor kwargs for `spec()`, add the OSTC heads, activate the initial config."""
        self._kwargs = kwargs
        if self.switchable_bn:
            self._kwargs["switchable_bn"] = True
        if self.cosine_head:
            self._kwargs["cosine_head"] = True
        if self.tri_head:
            self._kwargs["tri_head"] = True
            nf, classifier = self.num_features, self.classifier_layer()
            self.adapt_heads = nn.ModuleDict({k: self.layers.classifier(nf, self.num_classes) for k in ("s", "t")})
            for head in self.adapt_heads.values():  # same start as C_a, so the heads differ only by training
                head.load_state_dict(classifier.state_dict())
        if self.slim:
            self.set_config(self._config)

    # ---- width configs -----------------------------------------------------------------------

    def _validate(self, config: Sequence[float]) -> WidthConfig:
        cfg = tuple(float(w) for w in config)
        if len(cfg) != self.num_stages:
            raise ValueError(f"{self.family}: width config needs {self.num_stages} values, got {len(cfg)}: {cfg}")
        bad = [w for w in cfg if w not in self.width_choices]
        if bad:
            raise ValueError(f"{self.family}: width {bad[0]} is not one of width_choices {self.width_choices}")
        return cfg

    def set_config(self, config: Sequence[float]) -> None:
        """Make `config` the active widths of every slimmable layer.

        Raises:
            ValueError: Wrong length, a value not in `width_choices`, or a plain (non-slim) network.
        """
        cfg = self._validate(config)
        if not self.slim:
            raise ValueError(f"{self.family}: a plain network has fixed widths; extract() a subnet instead")
        widths = self.slot_channels(cfg)
        switch = self.bn_switch(cfg)
        for module in self.modules():
            if isinstance(module, SlimConv2d) and module.slot is not None:
                module.out_active = widths[module.slot]
            elif isinstance(module, SlimBatchNorm2d) and module.private is not None:
                module.switch = switch
        self._config = cfg

    def bn_switch(self, config: Sequence[float]) -> int | None:
        """Index of the private BN (switchable BN) that `config` uses, or None for the shared BN."""
        if not self.switchable_bn or len(set(config)) != 1:
            return None
        return self.width_choices.index(float(config[0]))

    @property
    def config(self) -> WidthConfig:
        """The active width config (for a plain net: the config its channels come from)."""
        return self._config

    def largest_config(self) -> WidthConfig:
        """Every stage at the largest width choice."""
        return (self.width_choices[-1],) * self.num_stages

    def smallest_config(self) -> WidthConfig:
        """Every stage at the smallest width choice."""
        return (self.width_choices[0],) * self.num_stages

    def sample_config(self, generator: torch.Generator) -> WidthConfig:
        """A config drawn uniformly per stage; deterministic given the generator's state."""
        idx = torch.randint(len(self.width_choices), (self.num_stages,), generator=generator)
        return tuple(self.width_choices[i] for i in idx.tolist())

    def all_configs(self) -> list[WidthConfig]:
        """Every config (len(width_choices) ** num_stages of them)."""
        return list(itertools.product(self.width_choices, repeat=self.num_stages))

    def slot_channels(self, config: Sequence[float]) -> dict[str, int]:
        """Channel count of every slot at `config`, rounded to `divisor` and capped at the full count."""
        cfg = self._validate(config)
        # Capping keeps multiplier 1.0 exact when a full count is not a multiple of the divisor.
        return {
            name: min(full, _make_divisible(full * cfg[stage], self.divisor))
            for name, (full, stage) in self._slots.items()
        }

    def stage_channels(self, config: Sequence[float]) -> list[int]:
        """Output channels of each stage at `config`."""
        widths = self.slot_channels(config)
        return [widths[f"stages.{i}"] for i in range(self.num_stages)]

    def feature_dim(self, config: Sequence[float] | None = None) -> int:
        """Width of `forward_features`' output at `config` (default: the active config)."""
        if not self.slim:
            return self.num_features
        return self.slot_channels(self._config if config is None else config)[self._feature_slot()]

    def _feature_slot(self) -> str:
        return f"stages.{self.num_stages - 1}"

    @property
    def channels(self) -> dict[str, int]:
        """Per-slot channel counts the layers were built with (full counts for a bank)."""
        return dict(self._channels)

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description; `build_bank(**spec)` rebuilds the same architecture."""
        spec: dict[str, Any] = {"family": self.family, **self._kwargs, "slim": self.slim}
        if not self.slim:
            spec["channels"] = dict(self._channels)
            spec["config"] = list(self._config)
        return spec

    # ---- forward -----------------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, flattened features before the classifier."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from `forward_features`' output."""
        raise NotImplementedError

    def classifier_layer(self) -> nn.Module:
        """The deployed classifier (C_a): the layer `forward_head` ends with."""
        layer = getattr(self, "classifier", None)
        if not isinstance(layer, nn.Module):
            raise NotImplementedError(f"{self.family}: no `classifier` layer")
        return layer

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters loaded from pretrained weights (trained at a lower learning rate); none in a scratch bank."""
        return []

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every head: `a` (the deployed classifier), plus `s` and `t` with `tri_head`."""
        out = {"a": self.forward_head(features)}
        if self.adapt_heads is not None:
            out |= {k: head(features) for k, head in self.adapt_heads.items()}
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


STUDENTS: Registry[type[SlimmableBank]] = Registry("student family")


def build_bank(family: str, num_classes: int, in_chans: int, **kwargs: Any) -> SlimmableBank:
    """Build a student of `family` (a slimmable bank unless `slim=False`).

    Args:
        family: A name in `STUDENTS` ("resnet_cifar", "mobilenet", "timm").
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Family options (see the family class), e.g. `width_choices`, `divisor`.

    Raises:
        RegistryError: Unknown family (the message suggests the closest name).
    """
    return STUDENTS.get(family)(num_classes=num_classes, in_chans=in_chans, **kwargs)
