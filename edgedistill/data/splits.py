"""Deterministic seeded splits: k labels per class, subsampling."""

from __future__ import annotations

import numpy as np

from edgedistill.errors import DataError


def few_label_split(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick `per_class` indices of every class; return (labeled, rest), both sorted.

    The choice depends only on `labels`, `per_class` and `seed`.
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise DataError(
                f"data.labels_per_class: class {c} has {len(idx)} images, fewer than labels_per_class={per_class}"
            )
        chosen.append(rng.choice(idx, size=per_class, replace=False))
    labeled = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(labels)), labeled, assume_unique=True)
    return labeled, rest


def subsample(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """At most `n` of `idx` (seeded, sorted); all of them when `n` is None or larger."""
    if n is None or n >= len(idx):
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))
