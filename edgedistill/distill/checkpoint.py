"""Atomic, resumable training checkpoints (`checkpoint/step-NNNNNN.pt`, last K kept)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from edgedistill.errors import CheckpointError
from edgedistill.io import atomic_write

_NAME = re.compile(r"step-(\d{6,})\.pt$")


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` atomically as step-NNNNNN.pt and delete all but the newest `keep`."""
    path = folder / f"step-{step:06d}.pt"
    atomic_write(path, lambda p: torch.save(state, p))
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    if not folder.is_dir():
        return []
    steps = {p: m[1] for p in folder.iterdir() if (m := _NAME.search(p.name))}
    return sorted(steps, key=lambda p: int(steps[p]))


def load_latest(folder: Path) -> dict[str, Any] | None:
    """Newest loadable checkpoint (a corrupt newest one is skipped), or None when there is none.

    Loaded with `weights_only=True`: a checkpoint can hold tensors and plain containers only.
    """
    errors = []
    for path in reversed(list_checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable file: try the previous one
            errors.append(f"{path.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        state["_path"] = str(path)
        return state
    if errors:
        raise CheckpointError(f"{folder}: no loadable checkpoint ({'; '.join(errors)})")
    return None
