"""`TimmAdapter`: how one timm network class becomes an elastic-width bank, and the `TIMM_ADAPTERS` registry.

An adapter lists the elastic blocks of a timm net and does the in-place surgery on one block: sort its elastic
channels by importance (function-preserving), make it slimmable, or shrink it to fixed widths. `TimmStudent` does
the rest (weights, classifier, norms) the same way for every class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from torch import nn

from edgedistill.errors import ConfigError
from edgedistill.registry import Registry


class TimmAdapter(ABC):
    """Elastic-width surgery for one timm network class (blocks are reached by timm's attribute names).

    Attributes:
        stem: Attribute of the stem conv, whose 3-channel pretrained weights are adapted to other `in_chans`.
        classifier: Attribute of the final linear layer, replaced by the task's classifier.
        examples: timm model names of this class that the tests cover (for messages and docs).
    """

    stem: str = "conv_stem"
    classifier: str = "classifier"
    examples: tuple[str, ...] = ()

    @abstractmethod
    def elastic_blocks(self, net: Any) -> dict[str, tuple[int, nn.Module]]:
        """Every elastic block of `net`: its module path → (timm stage index, block), in execution order."""

    @abstractmethod
    def slots(self, name: str, block: Any) -> dict[str, int]:
        """The block's channel slots: slot name → full channel count."""

    @abstractmethod
    def reorder(self, block: Any) -> None:
        """Sort the block's elastic channels by importance, most important first, without changing its function."""

    @abstractmethod
    def make_slim(self, name: str, block: Any) -> None:
        """Swap the block's convs for slimmable ones whose elastic outputs follow its slots (norms: `slim_norms`)."""

    @abstractmethod
    def shrink(self, name: str, block: Any, channels: Mapping[str, int]) -> None:
        """Resize a plain block to `channels` (slot name → count), keeping the leading slices of its weights."""

    def check(self, model: str, net: Any) -> None:  # noqa: B027 (an optional hook: most classes have no bad variants)
        """Raise `ConfigError` naming `student.options.model` if `net` has a variant this adapter cannot slice."""


TIMM_ADAPTERS: Registry[TimmAdapter] = Registry("timm network class")
"""Adapters keyed by timm class name (`EfficientNet`, `MobileNetV3`, `ResNet`)."""


def adapter_for(model: str, net: nn.Module) -> TimmAdapter:
    """The adapter of `net`'s class (or of its nearest registered base class).

    Raises:
        ConfigError: No adapter for the class, or a variant it cannot slice; the message names the field.
    """
    for cls in type(net).__mro__:
        if cls.__name__ in TIMM_ADAPTERS:
            adapter = TIMM_ADAPTERS.get(cls.__name__)
            adapter.check(model, net)
            return adapter
    examples = [e for name in TIMM_ADAPTERS.names() for e in TIMM_ADAPTERS.get(name).examples]
    raise ConfigError(
        f"student.options.model: '{model}' is a {type(net).__name__}; supported timm classes: "
        f"{', '.join(TIMM_ADAPTERS.names())} (e.g. {', '.join(examples)})"
    )


def unsupported(model: str, what: str) -> ConfigError:
    """The one-line error for a variant of a supported class that cannot be sliced."""
    return ConfigError(f"student.options.model: '{model}' has {what}, which the timm student cannot slice")
