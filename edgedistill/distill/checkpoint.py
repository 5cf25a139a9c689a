"""Atomic, verified, resumable training checkpoints (`checkpoint/step-NNNNNN.pt` + `.sha256`, last K kept).

Each checkpoint is written atomically, then its sha256 sidecar. On load, a checkpoint without a sidecar is an
unfinished write (the process died between the two) and is skipped for the previous one; a sidecar that does
not match is a changed or damaged file and stops the resume with one line, never silently.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from edgedistill.errors import CheckpointError, reason
from edgedistill.io import atomic_write, sidecar_path, sidecar_problem, write_sha256_sidecar

_NAME = re.compile(r"step-(\d{6,})\.pt$")


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` atomically as step-NNNNNN.pt with its sha256 sidecar; delete all but the newest `keep`."""
    path = folder / f"step-{step:06d}.pt"
    atomic_write(path, lambda p: torch.save(state, p))
    write_sha256_sidecar(path)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
        sidecar_path(old).unlink(missing_ok=True)
    for stale in folder.glob(".step-*.tmp"):  # temp files of a process killed mid-write (only one writer per run)
        stale.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    if not folder.is_dir():
        return []
    steps = {p: m[1] for p in folder.iterdir() if (m := _NAME.search(p.name))}
    return sorted(steps, key=lambda p: int(steps[p]))


def load_latest(folder: Path, required: Collection[str] = ()) -> dict[str, Any] | None:
    """Newest complete checkpoint, or None when there is none.

    Loaded with `weights_only=True`: a checkpoint can hold tensors and plain containers only.

    Args:
        required: keys the state must have (a checkpoint from another program or version lacks them).

    Raises:
        CheckpointError: the newest complete checkpoint fails its sha256 sidecar, cannot be read, or lacks a
            required key; or there are checkpoints but none is complete.
    """
    unfinished = []
    for path in reversed(list_checkpoints(folder)):
        problem = sidecar_problem(path, required=True)
        if problem and not sidecar_path(path).is_file():
            unfinished.append(path.name)
            continue
        if problem:
            raise CheckpointError(
                f"{problem}; the checkpoint changed after it was written (delete it to resume from the previous one)"
            )
        state = _read(path)
        missing = sorted(set(required) - set(state))
        if missing:
            raise CheckpointError(f"{path}: not an edgedistill training checkpoint (missing {', '.join(missing)})")
        state["_path"] = str(path)
        return state
    if unfinished:
        raise CheckpointError(f"{folder}: no complete checkpoint ({', '.join(unfinished)} have no .sha256 sidecar)")
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects weights_only refuses
        raise CheckpointError(f"{path}: cannot read checkpoint ({reason(e)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(state).__name__}, expected a dict)")
    return state
