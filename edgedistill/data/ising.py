"""The 2D Ising lattices of mdsdata (MDS-2, docs/data.md): a non-digit labeled domain that ships offline.

5,000 simulated 64×64 spin lattices (pixels 0 or 255), labelled below (0) or above (1) the Curie temperature.
The package has no test split: a fixed permutation (seed 0, independent of `data.seed`) holds out 1,000 images as
the test split, so no `data.seed` ever trains on them.
"""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np

from edgedistill.data.images import ImageSet
from edgedistill.data.packages import pkg_dir
from edgedistill.errors import DataError

ISING_CLASSES = ["below_tc", "above_tc"]
ISING_TEST = 1000


def load_ising(split: str) -> ImageSet:
    """The Ising lattices of `split` ("train": 4,000, "test": 1,000) as uint8 (N, 1, 64, 64) with labels 0/1."""
    from PIL import Image

    d = pkg_dir("mdsdata") / "MDS2_Ising_model"
    with open(d / "labels_64.csv", newline="") as f:
        labels = {row["filenames"]: int(row["labels"]) for row in csv.DictReader(f)}
    with zipfile.ZipFile(d / "images_64.zip") as z:
        names = sorted(n for n in z.namelist() if n in labels)
        if len(names) != len(labels):
            raise DataError(f"{d}: images_64.zip holds {len(names)} of the {len(labels)} lattices in labels_64.csv")
        images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("L")) for n in names])[:, None]
    y = np.array([labels[n] for n in names], dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(names))
    rows = np.sort(order[:ISING_TEST] if split == "test" else order[ISING_TEST:])
    return ImageSet(np.ascontiguousarray(images[rows]), y[rows])
