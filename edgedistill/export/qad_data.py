"""What QAD learns from: unlabeled-pool images and the teacher targets the run's training cached for them.

Never the test split and never labels: the images are drawn from the target's own unlabeled pool, and the teacher
targets are the cached logits (`teachers/`) of the teachers that train gave a weight α > 0, on those same rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch

from edgedistill.config import read_json
from edgedistill.data import Preprocess, TaskData
from edgedistill.run import RunDir
from edgedistill.teachers.cache import ShardedArray


@dataclass
class QADData:
    """Normalised pool images and, when the cache has them, α-weighted teacher logits per image.

    Attributes:
        images: (N, C, H, W) float32, normalised like the model input.
        teacher_logits: One (N, classes) array per teacher used, in `teachers` order.
        alphas: Their weights from train.json (normalised to sum 1).
        teachers: Sources of the teachers used.
        skipped: "source: reason" for the weighted teachers that could not be used.
    """

    images: torch.Tensor
    teacher_logits: list[np.ndarray] = field(default_factory=list)
    alphas: list[float] = field(default_factory=list)
    teachers: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def teacher_probs(self, idx: torch.Tensor, temperature: float) -> torch.Tensor | None:
        """Σ α · softmax(logits / T) of rows `idx`, or None without teachers."""
        if not self.teacher_logits:
            return None
        rows = idx.numpy()
        return sum(
            a * torch.softmax(torch.from_numpy(lg[rows]) / temperature, 1)
            for a, lg in zip(self.alphas, self.teacher_logits, strict=True)
        )  # type: ignore[return-value]


def pool_rows(data: TaskData, n: int, seed: int) -> np.ndarray:
    """Indices into `data.unlabeled` of `n` images drawn (seeded) from the target's own pool (all of a smaller one)."""
    own = data.target_rows()
    n = min(n, len(own))
    return own[np.sort(np.random.default_rng(seed).choice(len(own), size=n, replace=False))]


def _cached_logits(rd: RunDir, source: str, fingerprint: str, rows: int) -> list[ShardedArray]:
    """The run cache's logits of `source` on the image set `fingerprint` (every matching entry)."""
    found = []
    for meta_path in sorted(rd.teachers.glob(f"*/{fingerprint[:16]}/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
            if meta["source"] != source or meta["rows"] != rows or meta.get("images") != fingerprint:
                continue
            found.append(ShardedArray([meta_path.parent / f"logits-{i:03d}.npy" for i in range(meta["shards"])]))
        except (OSError, ValueError, KeyError):  # an unfinished or damaged entry is not a target
            continue
    return found


def qad_data(rd: RunDir, data: TaskData, pre: Preprocess, n: int, seed: int, use_teachers: bool = True) -> QADData:
    """`n` normalised pool images and the cached teacher targets of the same rows (when `use_teachers`).

    A weighted teacher is used when the run's cache holds its logits on the unlabeled pool and they are over the
    task's classes (native logits); one whose targets came from a fitted head is listed in `skipped`.
    """
    rows = pool_rows(data, n, seed)
    out = QADData(images=pre(torch.from_numpy(data.unlabeled.images[rows])))
    if not use_teachers or not rd.train_json.is_file():
        return out
    weighted = [t for t in read_json(rd.train_json).get("teachers", []) if float(t.get("alpha", 0)) > 0]
    fingerprint = data.unlabeled.fingerprint() if weighted else ""
    for t in weighted:
        source = str(t["source"])
        entries = _cached_logits(rd, source, fingerprint, len(data.unlabeled))
        if len(entries) != 1:
            why = "no cached logits on the unlabeled pool" if not entries else "several cache entries match"
            out.skipped.append(f"{source}: {why}")
            continue
        if entries[0].shape[1] != data.num_classes:
            out.skipped.append(f"{source}: predicts {entries[0].shape[1]} classes (its targets need a fitted head)")
            continue
        out.teacher_logits.append(entries[0][rows])
        out.alphas.append(float(t["alpha"]))
        out.teachers.append(source)
    total = sum(out.alphas)
    out.alphas = [a / total for a in out.alphas]
    return out
