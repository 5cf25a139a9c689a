"""Atomic writes (temp file, fsync, rename) and hashing for checkpoints and artifacts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgedistill.errors import ResourceError


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp_path)` then atomically move the result to `path`.

    A crash leaves either the old file or the new one, never a partial file.
    """
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dst)
    finally:
        tmp_path.unlink(missing_ok=True)
    _fsync_dir(dst.parent)
    return dst


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write pretty JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_problem(path: str | Path, expected: str, source: str = "manifest") -> str | None:
    """None when `path` is a file hashing to `expected`; else one line naming the file and what is wrong.

    Stdlib only: the torch-free device runner uses it as well as the manifest reader.
    """
    p = Path(path)
    if not p.is_file():
        return f"{p}: listed in the {source} but missing"
    actual = sha256_file(p)
    if actual != expected:
        return f"{p}: sha256 mismatch ({source} {expected[:12]}…, file {actual[:12]}…)"
    return None


def sidecar_path(path: str | Path) -> Path:
    """`<file>.sha256`: the hash of `<file>` as written, checked when it is read back."""
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def write_sha256_sidecar(path: str | Path) -> Path:
    """Write `<file>.sha256` (`<hex>  <name>`, the sha256sum format) atomically, after `<file>` itself."""
    p = Path(path)
    return atomic_write_text(sidecar_path(p), f"{sha256_file(p)}  {p.name}\n")


def sidecar_problem(path: str | Path, required: bool) -> str | None:
    """None when `<file>` matches its `.sha256` sidecar (or has none and `required` is False); else why not."""
    p, side = Path(path), sidecar_path(path)
    if not side.is_file():
        return f"{p}: no {side.name} next to it (an unfinished write)" if required else None
    expected = side.read_text(encoding="utf-8", errors="replace").split(maxsplit=1)[:1]
    if not expected or len(expected[0]) != 64:
        return f"{side}: not a sha256 sidecar (expected '<64 hex digits>  {p.name}')"
    return sha256_problem(p, expected[0], source=side.name)


def require_disk(folder: str | Path, need_bytes: int, what: str) -> None:
    """Raise `ResourceError` before writing `need_bytes` into `folder` when its disk has less free space."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if need_bytes > free:
        raise ResourceError(
            f"{folder}: {what} needs {need_bytes / 2**20:.1f} MiB, the disk has {free / 2**20:.1f} MiB free; "
            "free some space or put the run folder (--out) on a larger disk"
        )
