"""`extract`: turn one width config of a bank into a plain network with real narrower layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from edgedistill.models.slimmable import SlimBatchNorm2d
from edgedistill.models.students import STUDENTS, SlimmableBank


def extract(bank: SlimmableBank, config: Sequence[float]) -> SlimmableBank:
    """Build the plain subnet of `bank` at `config` and copy the leading slices of its weights and BN stats.

    The bank itself is left untouched (its active config included). A tri-head (OSTC) bank yields a
    subnet with the deployed classifier C_a only; the adaptation heads stay in the bank. Recalibrate the bank's BN at
    `config` first (`recalibrate_bn`) when its running stats were accumulated at other widths.

    Args:
        bank: A slimmable bank.
        config: Width multipliers, one per stage.

    Returns:
        The plain network in eval mode, on the bank's device; `spec()` records family, kwargs,
        explicit `channels` and `config`.

    Raises:
        ValueError: `bank` is not slimmable, or `config` is invalid for it.
    """
    if not bank.slim:
        raise ValueError(f"{bank.family}: extract() needs a slimmable bank, got a plain network")
    spec = bank.spec()
    family = spec.pop("family")
    spec.pop("tri_head", None)  # deployed nets keep only C_a, the bank's `classifier`
    spec.pop("switchable_bn", None)  # a subnet has one BN per layer: the one `config` uses
    spec.update(slim=False, channels=bank.slot_channels(config), config=list(config))
    ref = next(bank.parameters())
    net = STUDENTS.get(family)(**spec).to(device=ref.device, dtype=ref.dtype)
    source = bank.state_dict()
    switch = bank.bn_switch(config)
    if switch is not None:  # switchable BN at a uniform width: its private BNs become the subnet's BNs
        for name, module in bank.named_modules():
            if isinstance(module, SlimBatchNorm2d) and module.private is not None:
                private = f"{name}.private.{switch}."
                source |= {f"{name}.{k[len(private) :]}": v for k, v in source.items() if k.startswith(private)}
    sliced = {}
    for name, target in net.state_dict().items():
        weight = source[name]
        if target.dim() != weight.dim() or any(t > w for t, w in zip(target.shape, weight.shape, strict=True)):
            raise RuntimeError(f"{name}: subnet shape {tuple(target.shape)} does not fit bank {tuple(weight.shape)}")
        # Slimmable layers always use the leading channels, so a prefix slice on every axis is the subnet.
        sliced[name] = weight[tuple(slice(0, t) for t in target.shape)].clone()
    with torch.no_grad():
        net.load_state_dict(sliced, strict=True)
    return net.eval()
