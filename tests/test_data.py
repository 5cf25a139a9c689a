"""Offline target data: seeded splits, the embedded tasks, ImageFolder loading, preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgedistill.data import DataConfig, ImageSet, Preprocess, build_task_data
from edgedistill.data.splits import few_label_split, subsample
from edgedistill.errors import DataError, RegistryError


def test_few_label_split_is_seeded_and_balanced() -> None:
    labels = np.repeat(np.arange(10), 50)
    a, rest = few_label_split(labels, 5, seed=3)
    b, _ = few_label_split(labels, 5, seed=3)
    c, _ = few_label_split(labels, 5, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a]).tolist() == [5] * 10
    assert len(np.intersect1d(a, rest)) == 0 and len(a) + len(rest) == len(labels)
    with pytest.raises(DataError, match="fewer than labels_per_class=60"):
        few_label_split(labels, 60, seed=0)


def test_subsample() -> None:
    idx = np.arange(100)
    assert np.array_equal(subsample(idx, None, 0), idx)
    s = subsample(idx, 10, 0)
    assert len(s) == 10 and np.array_equal(s, subsample(idx, 10, 0)) and np.all(np.diff(s) > 0)


def test_mnist_demo_task_splits() -> None:
    d = build_task_data(DataConfig(source="mnist", labels_per_class=10, unlabeled=1000, seed=0))
    assert (len(d.labeled), len(d.unlabeled), len(d.test)) == (100, 1000, 10000)
    assert d.labeled.images.shape[1:] == (1, 28, 28) and d.unlabeled.labels is None
    assert np.bincount(d.labeled.labels).tolist() == [10] * 10
    # MNIST test per-class counts
    assert np.bincount(d.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    again = build_task_data(DataConfig(source="mnist", labels_per_class=10, unlabeled=1000, seed=0))
    assert d.labeled.fingerprint() == again.labeled.fingerprint()
    calib = d.calibration(300, seed=0)
    assert len(calib) == 300 and calib.fingerprint() == d.calibration(300, seed=0).fingerprint()
    with pytest.raises(DataError, match="unlabeled pool has 1000"):
        d.calibration(5000)


def test_optdigits_task() -> None:
    d = build_task_data(DataConfig(source="optdigits", labels_per_class=10))
    assert (len(d.labeled), len(d.unlabeled), len(d.test)) == (100, 3723, 1797)
    assert d.test.images.max() == 255 and d.test.images.shape[1:] == (1, 8, 8)


def test_unknown_target_did_you_mean() -> None:
    with pytest.raises(RegistryError, match="did you mean 'mnist'"):
        build_task_data(DataConfig(source="mnst"))


def _folder(root: Path, classes: dict[str, int], size: int = 12, mode: str = "L") -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, n in classes.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                shape = (size, size) if mode == "L" else (size, size, 3)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(d / f"{i}.png")


def test_imagefolder_task(tmp_path: Path) -> None:
    _folder(tmp_path / "ds", {"cat": 6, "dog": 7})
    d = build_task_data(DataConfig(source="imagefolder", root="ds", channels=3, labels_per_class=2), tmp_path)
    assert d.class_names == ["cat", "dog"] and len(d.labeled) == 4 and len(d.unlabeled) == 9 and len(d.test) == 13
    assert d.labeled.images.shape[1:] == (3, 12, 12)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: None, "folder not found"),
        (lambda r: (r / "ds" / "train").mkdir(parents=True), "no class sub-folders"),
        (lambda r: (r / "ds" / "train" / "a").mkdir(parents=True), "class folder has no images"),
    ],
)
def test_imagefolder_errors(tmp_path: Path, setup, message: str) -> None:  # type: ignore[no-untyped-def]
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        build_task_data(DataConfig(source="imagefolder", root="ds"), tmp_path)


def test_imagefolder_corrupt_image_named(tmp_path: Path) -> None:
    _folder(tmp_path / "ds", {"a": 3, "b": 3})
    bad = tmp_path / "ds" / "train" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: cannot read image"):
        build_task_data(DataConfig(source="imagefolder", root="ds", labels_per_class=1), tmp_path)


def test_imagefolder_needs_root() -> None:
    with pytest.raises(DataError, match="data.root: required"):
        build_task_data(DataConfig(source="imagefolder"))


def test_preprocess_resizes_adapts_channels_and_normalises() -> None:
    x = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    pre = Preprocess(32, 32, 3, (0.5,), (0.5,))
    y = pre(x)
    assert y.shape == (2, 3, 32, 32) and torch.allclose(y, torch.ones_like(y))
    assert pre.manifest()["mean"] == [0.5, 0.5, 0.5]
    assert (
        ImageSet(np.zeros((1, 1, 2, 2), np.uint8)).fingerprint()
        != ImageSet(np.ones((1, 1, 2, 2), np.uint8)).fingerprint()
    )
