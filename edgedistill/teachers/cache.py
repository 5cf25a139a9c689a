"""On-disk cache of teacher soft labels for the unlabeled pool, keyed by teachers + images."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edgedistill.data.images import ImageSet
from edgedistill.io import atomic_write
from edgedistill.teachers.ensemble import average_soft_labels
from edgedistill.teachers.sources import load_teacher


def cache_key(sources: list[str], images: ImageSet) -> str:
    """Hash of the teacher sources (with their input options) and the exact images."""
    h = hashlib.sha256("\n".join(sources).encode())
    h.update(images.fingerprint().encode())
    return h.hexdigest()[:16]


def cached_soft_labels(
    sources: list[str], images: ImageSet, folder: Path, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, bool]:
    """Mean teacher soft labels for `images`, computed once and reused while the inputs are unchanged.

    Returns:
        (probabilities (N, classes), whether the cache was hit).
    """
    path = folder / f"soft-{cache_key(sources, images)}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["probs"], True
        except Exception:  # a damaged cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    teachers = [load_teacher(s, device) for s in sources]
    probs = average_soft_labels(teachers, images.images).contiguous()
    atomic_write(path, lambda p: save_file({"probs": probs}, str(p), metadata={"sources": "\n".join(sources)}))
    return probs, False
