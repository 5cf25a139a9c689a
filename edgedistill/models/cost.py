"""Compute and size of a network: MACs from `torch.utils.flop_counter`, parameter count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgedistill.models.extract import extract
from edgedistill.models.students import SlimmableBank


@dataclass(frozen=True)
class Cost:
    """Multiply-accumulates of one forward pass and parameter count."""

    macs: int
    params: int

    @property
    def macs_m(self) -> float:
        """MACs in millions."""
        return self.macs / 1e6

    @property
    def params_m(self) -> float:
        """Parameters in millions."""
        return self.params / 1e6


def count_cost(model: nn.Module, input_shape: tuple[int, int, int, int]) -> Cost:
    """Count MACs (FLOPs / 2) of one eval-mode forward on zeros of `input_shape`, and the parameters.

    Args:
        model: A plain network (for a bank use `bank_cost`, since its parameters are the full set).
        input_shape: `(N, C, H, W)`.

    Raises:
        ValueError: `model` is a slimmable bank.
    """
    if isinstance(model, SlimmableBank) and model.slim:
        raise ValueError("count_cost: a bank holds every width's parameters; use bank_cost(bank, config, shape)")
    ref = next(model.parameters(), None)
    x = torch.zeros(input_shape) if ref is None else torch.zeros(input_shape, device=ref.device, dtype=ref.dtype)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for module, training in modes.items():
            module.training = training
    return Cost(macs=counter.get_total_flops() // 2, params=sum(p.numel() for p in model.parameters()))


def bank_cost(bank: SlimmableBank, config: Sequence[float], input_shape: tuple[int, int, int, int]) -> Cost:
    """Cost of the subnet `extract(bank, config)`."""
    return count_cost(extract(bank, config), input_shape)
