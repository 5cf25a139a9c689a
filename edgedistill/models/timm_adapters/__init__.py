"""Architecture adapters of the `timm` student family, keyed by timm class (registry `TIMM_ADAPTERS`).

Importing this package registers `EfficientNet`, `MobileNetV3` (inverted residuals) and `ResNet`.
"""

from __future__ import annotations

from edgedistill.models.timm_adapters import inverted_residual as _inverted_residual  # noqa: F401  (registers)
from edgedistill.models.timm_adapters import resnet as _resnet  # noqa: F401  (registers "ResNet")
from edgedistill.models.timm_adapters.base import TIMM_ADAPTERS, TimmAdapter, adapter_for

__all__ = ["TIMM_ADAPTERS", "TimmAdapter", "adapter_for"]
