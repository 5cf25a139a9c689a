"""BatchNorm recalibration: recompute running stats for one width config from a few target images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from edgedistill.errors import DataError
from edgedistill.models.layout import memory_format
from edgedistill.models.slimmable import SlimBatchNorm2d
from edgedistill.models.students import SlimmableBank

BN_BATCH = 500  # images per BN-recalibration batch at 64x64 px or less
PIXELS_PER_BN_BATCH = BN_BATCH * 64 * 64
PIXELS_PER_EVAL_BATCH = 100 * 64 * 64


def images_per_batch(height: int, width: int, pixels: int = PIXELS_PER_BN_BATCH, most: int = BN_BATCH) -> int:
    """Images per forward batch at `height` x `width` with at most `pixels` input pixels per batch (at least 8).

    Activations grow with the batch's pixels: 500 images of 224 px through a Lite0 bank held 5-7 GB (measured on
    the photo task), 40 hold a twelfth of it. Up to 64 px nothing changes (the 500 or 100 images every run used).
    """
    return max(8, min(most, pixels // max(1, height * width)))


def bn_batches(images: torch.Tensor, batch: int | None = None) -> list[torch.Tensor]:
    """`images` (N, C, H, W) in the batches BN is recalibrated with: `batch` images each, or `images_per_batch` of
    their size. Recalibrated statistics are per batch, so every caller that must reproduce them splits here."""
    b = batch or images_per_batch(images.shape[-2], images.shape[-1])
    return [images[i : i + b] for i in range(0, len(images), b)]


def active_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm modules the model's current config runs (switchable BN: the selected private ones)."""
    out: list[nn.modules.batchnorm._BatchNorm] = []
    skip: set[int] = set()
    for m in model.modules():
        if id(m) in skip or not isinstance(m, nn.modules.batchnorm._BatchNorm):
            continue
        if isinstance(m, SlimBatchNorm2d) and m.private is not None:
            skip |= {id(p) for p in m.private}
            out.append(m.active())
        else:
            out.append(m)
    return out


def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[torch.Tensor | Sequence[torch.Tensor]],
    config: Sequence[float] | None = None,
    max_images: int = 2000,
) -> None:
    """Reset every BatchNorm's running stats and re-estimate them as a cumulative average over `batches`.

    Shared BN statistics are wrong for any width but the one they were accumulated at (SlimDA), so
    a bank is recalibrated per config before it is extracted. The model's train/eval flags and BN
    momenta are restored afterwards. For a bank, the stats of channels outside `config` are reset.
    Only the BNs `config` uses are touched: with switchable BN at a uniform width, that width's private
    BNs (the shared BN and the other widths' private ones are left as they are).

    Args:
        model: A slimmable bank or a plain network.
        batches: Image batches `(N, C, H, W)`, or `(images, ...)` tuples as from a DataLoader.
        config: Bank only: width config to recalibrate (set and left active).
        max_images: Stop after this many images (the last batch is truncated).

    Raises:
        ValueError: `config` given for a model that is not a slimmable bank.
        DataError: `batches` yielded no images.
    """
    if config is not None:
        if not isinstance(model, SlimmableBank) or not model.slim:
            raise ValueError("recalibrate_bn: `config` is only valid for a slimmable bank")
        model.set_config(config)
    bns = [m for m in active_batchnorms(model) if m.track_running_stats]
    modes = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in bns]
    ref = next(model.parameters(), None)
    fmt = memory_format(model)
    seen = 0
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average: every batch weighs the same
        model.train()
        with torch.no_grad():
            for batch in batches:
                images = batch if isinstance(batch, torch.Tensor) else batch[0]
                images = images[: max_images - seen]
                if ref is not None:
                    images = images.to(device=ref.device, dtype=ref.dtype, memory_format=fmt)
                model(images)
                seen += images.shape[0]
                if seen >= max_images:
                    break
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for module, training in modes.items():
            module.training = training
    if seen == 0:
        raise DataError("recalibrate_bn: no images to recalibrate BatchNorm statistics with")
