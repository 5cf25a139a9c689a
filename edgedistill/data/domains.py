"""Extra unlabeled domains (`data.extra_unlabeled`): sources (registry), conversion to the target's image format,
and the merged multi-domain pool that the UDON domain sampler draws from (docs/method.md).

The target's own unlabeled pool is domain 0; entry i of `data.extra_unlabeled` is domain i + 1. Every domain's
images are converted to the target's (C, H, W) uint8 format, so the pool stays one array and the teacher cache
treats it as any other image set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgedistill.data.config import DataConfig, DomainConfig
from edgedistill.data.digits import load_ccexam_samples, load_mnist, load_optdigits
from edgedistill.data.folders import load_unlabeled_folder
from edgedistill.data.images import ImageSet, TaskData
from edgedistill.data.preprocess import Preprocess
from edgedistill.data.splits import subsample
from edgedistill.errors import ConfigError, RegistryError
from edgedistill.registry import Registry

Frame = tuple[int, int, int]  # (channels, height, width) of the target's images


UnlabeledSource = Callable[[DomainConfig, Path, Frame, str], tuple[np.ndarray, list[str]]]
"""(entry, base dir, target frame, field path) → (uint8 NCHW images at any size, skipped files)."""

UNLABELED_SOURCES: Registry[UnlabeledSource] = Registry("unlabeled source")


@UNLABELED_SOURCES.register("mnist")
def _mnist(d: DomainConfig, base_dir: Path, frame: Frame, field: str) -> tuple[np.ndarray, list[str]]:
    return load_mnist("train").images, []  # the train split only: MNIST test never enters training


@UNLABELED_SOURCES.register("optdigits")
def _optdigits(d: DomainConfig, base_dir: Path, frame: Frame, field: str) -> tuple[np.ndarray, list[str]]:
    return load_optdigits("train").images, []  # optdigits.tra only (.tes = sklearn's load_digits, a test set)


@UNLABELED_SOURCES.register("usps-samples")
def _usps(d: DomainConfig, base_dir: Path, frame: Frame, field: str) -> tuple[np.ndarray, list[str]]:
    return load_ccexam_samples("usps", frame[0]).images, []


@UNLABELED_SOURCES.register("svhn-samples")
def _svhn(d: DomainConfig, base_dir: Path, frame: Frame, field: str) -> tuple[np.ndarray, list[str]]:
    return load_ccexam_samples("svhn", frame[0]).images, []


@UNLABELED_SOURCES.register("imagefolder")
def _imagefolder(d: DomainConfig, base_dir: Path, frame: Frame, field: str) -> tuple[np.ndarray, list[str]]:
    root = _folder(d, base_dir, field)
    size = (d.box, d.box) if d.box else frame[1:]
    found = load_unlabeled_folder(root, frame[0], size, d.on_corrupt, field)
    return found.images.images, found.skipped


def _folder(d: DomainConfig, base_dir: Path, field: str) -> Path:
    if not d.root:
        raise ConfigError(f"{field}.root: required for source 'imagefolder' (a folder of images)")
    root = (base_dir / d.root).resolve()
    if not root.is_dir():
        raise ConfigError(f"{field}.root: {root}: folder not found")
    return root


def to_frame(images: np.ndarray, frame: Frame, box: int | None = None, invert: bool = False) -> np.ndarray:
    """uint8 (N, c, h, w) → the target's uint8 (N, C, H, W).

    Resized bilinearly (antialiased when shrinking) and channel-adapted as the model input is (`Preprocess`),
    optionally inverted; with `box`, resized into a centred box×box square whose margin takes each image's
    border colour (the median of the box's edge pixels).
    """
    c, h, w = frame
    bh, bw = (box, box) if box else (h, w)
    top, left = (h - bh) // 2, (w - bw) // 2
    pre = Preprocess(bh, bw, c, (0.0,), (1.0,))
    out = np.empty((len(images), c, h, w), dtype=np.uint8)
    for i in range(0, len(images), 4096):  # chunks: the float copy stays small
        x = pre.to_unit(torch.from_numpy(np.ascontiguousarray(images[i : i + 4096])))
        x = (1.0 - x if invert else x).mul(255.0).round().to(torch.uint8)
        if box:
            edge = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
            bg = edge.flatten(1).float().median(dim=1).values.to(torch.uint8)
            out[i : i + len(x)] = bg.view(-1, 1, 1, 1).numpy()
        out[i : i + len(x), :, top : top + bh, left : left + bw] = x.numpy()
    return out


def domain_name(d: DomainConfig) -> str:
    """The entry's name in run records."""
    if d.name:
        return d.name
    return f"imagefolder:{Path(d.root).name}" if d.source == "imagefolder" and d.root else d.source


def add_domains(data: TaskData, cfg: DataConfig, base_dir: Path) -> TaskData:
    """`data` with the images of `cfg.extra_unlabeled` appended to its unlabeled pool, and their domain indices.

    Unchanged (`domains` None) when there are no extra domains.

    Raises:
        ConfigError: naming the entry's field: unknown source, the target's own data again, a missing root or one
            that overlaps the target's ImageFolder, more `images` than the source has, a box larger than the frame,
            a duplicate name.
    """
    if not cfg.extra_unlabeled:
        return data
    c, h, w = (int(s) for s in data.labeled.images.shape[1:])
    frame = (c, h, w)
    pools, names, skipped = [data.unlabeled.images], [data.name], list(data.skipped)
    for i, d in enumerate(cfg.extra_unlabeled):
        field = f"data.extra_unlabeled[{i}]"
        _check_entry(d, cfg, base_dir, frame, field)
        name = domain_name(d)
        if name in names:
            raise ConfigError(f"{field}.name: '{name}' is already domain {names.index(name)}'s name; set another")
        images, bad = UNLABELED_SOURCES.get(d.source)(d, base_dir, frame, field)
        if d.images is not None and d.images > len(images):
            raise ConfigError(f"{field}.images: {d.images} asked, source '{d.source}' has {len(images)}")
        images = images[subsample(np.arange(len(images)), d.images, cfg.seed + 10 + i)]
        pools.append(to_frame(images, frame, d.box, d.invert))
        names.append(name)
        skipped += bad
    domains = np.repeat(np.arange(len(pools)), [len(p) for p in pools])
    return replace(
        data,
        unlabeled=ImageSet(np.concatenate(pools)),
        domains=domains,
        domain_names=names,
        skipped=skipped,
    )


def _check_entry(d: DomainConfig, cfg: DataConfig, base_dir: Path, frame: Frame, field: str) -> None:
    try:
        UNLABELED_SOURCES.get(d.source)
    except RegistryError as e:
        raise ConfigError(f"{field}.source: {e}") from None
    if d.source == cfg.source and d.source != "imagefolder":
        raise ConfigError(f"{field}.source: '{d.source}' is the target's own data (its unlabeled pool is domain 0)")
    if d.box is not None and d.box > min(frame[1:]):
        raise ConfigError(f"{field}.box: {d.box} is larger than the target's {frame[2]}x{frame[1]} images")
    if d.source == "imagefolder":
        root = _folder(d, base_dir, field)
        if cfg.source == "imagefolder" and cfg.root:
            target = (base_dir / cfg.root).resolve()
            for split in (target / "train", target / "test"):
                if root == split or split.is_relative_to(root) or root.is_relative_to(split):
                    raise ConfigError(
                        f"{field}.root: {root} overlaps the target's {split} (its train images are already domain "
                        "0, its test images must stay out of training)"
                    )
