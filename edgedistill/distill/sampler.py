"""Sandwich sampling of width configs: largest, smallest and K-2 random per step."""

from __future__ import annotations

import torch

from edgedistill.models import SlimmableBank, WidthConfig


def sandwich_configs(bank: SlimmableBank, k: int, gen: torch.Generator) -> list[WidthConfig]:
    """K configs for one step; the first is always the largest."""
    configs = [bank.largest_config()]
    if k >= 2:
        configs.append(bank.smallest_config())
    configs += [bank.sample_config(gen) for _ in range(k - 2)]
    return configs
