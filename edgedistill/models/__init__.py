"""Slimmable student banks: build, extract subnets, recalibrate BN, count cost, save/load.

Importing this package registers the student families (`resnet_cifar`, `mobilenet`, `timm`) in `STUDENTS`.
"""

from __future__ import annotations

from edgedistill.models import mobilenet as _mobilenet  # noqa: F401  (registers "mobilenet")
from edgedistill.models import resnet_cifar as _resnet_cifar  # noqa: F401  (registers "resnet_cifar")
from edgedistill.models import timm_student as _timm_student  # noqa: F401  (registers "timm")
from edgedistill.models.bn import recalibrate_bn
from edgedistill.models.cost import Cost, bank_cost, count_cost
from edgedistill.models.extract import extract
from edgedistill.models.layout import memory_format
from edgedistill.models.serialize import load_bank, load_subnet, save_bank, save_subnet
from edgedistill.models.slimmable import SlimBatchNorm2d, SlimConv2d, SlimLinear
from edgedistill.models.students import STUDENTS, SlimmableBank, WidthConfig, build_bank

__all__ = [
    "STUDENTS",
    "Cost",
    "SlimBatchNorm2d",
    "SlimConv2d",
    "SlimLinear",
    "SlimmableBank",
    "WidthConfig",
    "bank_cost",
    "build_bank",
    "count_cost",
    "extract",
    "load_bank",
    "load_subnet",
    "memory_format",
    "recalibrate_bn",
    "save_bank",
    "save_subnet",
]
