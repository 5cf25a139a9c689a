"""Teacher cache: per teacher and image set, L2-normalised penultimate features and logits on disk.

Layout: `FOLDER/<teacher key>/<image-set key>/{features,logits}-NNN.npy` + `meta.json` (written last, so a
missing meta means an unfinished entry). The teacher key hashes the source string, the weights' sha256 and
the input pipeline; the image-set key is the images' fingerprint. Shards are opened with `mmap_mode="r"`,
so training reads only the rows of each batch and never runs a teacher again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgedistill.data.images import ImageSet
from edgedistill.io import atomic_write, atomic_write_json, require_disk
from edgedistill.progress import progress
from edgedistill.teachers.sources import Teacher, load_teacher

CACHE_VERSION = 1
SHARD_ROWS = 1 << 16


class ShardedArray:
    """Rows of one array split over `.npy` shards, memory-mapped; indexing reads only the rows asked for."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.shards = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths]
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.starts[-1]), *self.shards[0].shape[1:])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Rows `idx` (an integer array) as a float32 array in memory."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.float32)
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        for s in np.unique(shard):
            rows = shard == s
            out[rows] = self.shards[s][idx[rows] - self.starts[s]]
        return out

    def read(self) -> np.ndarray:
        """All rows in memory."""
        return np.concatenate([np.asarray(s, dtype=np.float32) for s in self.shards])


@dataclass
class TeacherOutputs:
    """One image set's cached outputs: features (N, D), L2-normalised, and logits (N, teacher classes)."""

    features: ShardedArray
    logits: ShardedArray


@dataclass
class CachedTeacher:
    """A teacher's identity and its cached outputs per named image set."""

    source: str
    name: str
    key: str
    num_classes: int
    sets: dict[str, TeacherOutputs] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)  # sets computed by this call (the rest were cache hits)

    @property
    def feature_dim(self) -> int:
        return next(iter(self.sets.values())).features.shape[1]


def teacher_key(teacher: Teacher) -> str:
    """Hash of what determines a teacher's outputs: source, weights and input pipeline."""
    ident = [str(CACHE_VERSION), teacher.source, teacher.weights_sha256, teacher.input.model_dump_json()]
    return hashlib.sha256("\n".join(ident).encode()).hexdigest()[:16]


def _load_entry(entry: Path, rows: int) -> TeacherOutputs | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta["rows"] != rows:
            return None
        feats = ShardedArray([entry / f"features-{i:03d}.npy" for i in range(meta["shards"])])
        logits = ShardedArray([entry / f"logits-{i:03d}.npy" for i in range(meta["shards"])])
        return TeacherOutputs(feats, logits) if len(feats) == len(logits) == rows else None
    except (OSError, ValueError, KeyError, IndexError):  # missing or damaged: recompute, never trust
        return None


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append ".npy" to the temp name
        np.save(f, arr)


@torch.inference_mode()
def _compute_entry(
    teacher: Teacher, images: ImageSet, entry: Path, batch: int, advance: Callable[[int], object]
) -> None:
    shutil.rmtree(entry, ignore_errors=True)
    dev = next(teacher.model.parameters(), torch.empty(0)).device
    shards, buf_f, buf_l = 0, np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)

    def flush(rows: int) -> None:
        nonlocal shards, buf_f, buf_l
        for kind, buf in (("features", buf_f), ("logits", buf_l)):
            atomic_write(entry / f"{kind}-{shards:03d}.npy", functools.partial(_save_npy, arr=buf[:rows]))
        shards, buf_f, buf_l = shards + 1, buf_f[rows:], buf_l[rows:]

    for i in range(0, len(images), batch):
        feats_t, logits_t = teacher.predict(torch.from_numpy(images.images[i : i + batch]).to(dev))
        feats = torch.nn.functional.normalize(feats_t, dim=1).cpu().numpy()
        logits = logits_t.cpu().numpy()
        if i == 0:  # the row width is known now: refuse before filling the disk
            row_bytes = (feats.shape[1] + logits.shape[1]) * np.dtype(np.float32).itemsize
            require_disk(entry, len(images) * row_bytes + (1 << 20), f"the {teacher.name} teacher cache")
        buf_f = np.concatenate([buf_f, feats]) if len(buf_f) else feats
        buf_l = np.concatenate([buf_l, logits]) if len(buf_l) else logits
        while len(buf_f) >= SHARD_ROWS:
            flush(SHARD_ROWS)
        advance(len(feats))
    if len(buf_f) or not shards:
        flush(len(buf_f))
    meta = {"rows": len(images), "shards": shards, "source": teacher.source, "images": images.fingerprint()}
    atomic_write_json(entry / "meta.json", meta)


def _on(teacher: Teacher, device: torch.device | str) -> Teacher:
    teacher.model.to(device)
    return teacher


def cache_teachers(
    sources: Sequence[str],
    sets: Mapping[str, ImageSet],
    folder: Path,
    device: torch.device | str = "cpu",
    base: Path | None = None,
    show_progress: bool = False,
    batch: int = 64,
    loaded: Mapping[str, Teacher] | None = None,
) -> list[CachedTeacher]:
    """Features and logits of every teacher on every image set, computed once and then read from `folder`.

    Args:
        sources: teacher source strings (`ccexam:usps?crop=0.72`, `packaged:efficientnet_lite0`, ...).
        sets: named image sets, e.g. {"labeled": ..., "unlabeled": ..., "test": ...}.
        base: folder for relative weight paths (the task file's folder).
        batch: images per teacher forward (64: activations stay in the CPU caches; 256 ran 1.6x slower).
        loaded: teachers the caller has already loaded, by source string (moved to `device`; not loaded again).

    Returns:
        One `CachedTeacher` per source, in order, with memory-mapped outputs per set.
    """
    loaded = loaded or {}
    teachers = [_on(loaded[s], device) if s in loaded else load_teacher(s, device, base) for s in sources]
    out = [CachedTeacher(t.source, t.name, teacher_key(t), t.num_classes) for t in teachers]
    todo = []
    for t, c in zip(teachers, out, strict=True):
        for name, images in sets.items():
            entry = folder / c.key / images.fingerprint()[:16]
            hit = _load_entry(entry, len(images))
            if hit is None:
                todo.append((t, c, name, images, entry))
            else:
                c.sets[name] = hit
    total = sum(len(item[3]) for item in todo)
    with progress("teachers", total, show=show_progress and bool(todo), unit="image") as bar:
        folded: dict[str, Teacher] = {}  # each teacher's inference copy, BatchNorms folded, made once
        for t, c, name, images, entry in todo:
            bar.update(description=f"{t.name}/{name}")
            if t.source not in folded:
                folded[t.source] = t.folded()
            _compute_entry(folded[t.source], images, entry, batch, bar.advance)
            written = _load_entry(entry, len(images))
            assert written is not None, f"{entry}: cache entry unreadable right after writing"
            c.sets[name], c.computed = written, [*c.computed, name]
    return out
