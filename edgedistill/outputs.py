"""Output folders that never lose a user's file: ownership markers, safe names, paths that stay inside their root.

Every folder edgedistill creates for its output (a run folder, a report folder, a device-runner folder) holds a
marker file, `.edgedistill.json`, written when the folder is made. The marker records the folder's kind and the
sha256 of each file edgedistill wrote there. Rules that follow from it:

- `--overwrite` deletes only a folder whose marker says edgedistill made it; never a symlink, never anything else.
- A file is replaced only when edgedistill wrote it (the marker lists it with the same sha256, or it lies in a
  run folder); any other existing file is refused, named, and left as it was.

Standard library only: the report stage and the device runner use it without torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from edgedistill.errors import ConfigError
from edgedistill.io import atomic_write_text, sha256_file

MARKER = ".edgedistill.json"
Kind = Literal["run", "report", "runner"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def check_name(name: str) -> str:
    """`name` when it is safe as a file name (letters, digits, `._+-`, no `..`, ≤ 100 characters).

    Raises:
        ValueError: for pydantic validators, which add the file and field.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"{name!r} is used as a file name: use letters, digits and . _ + - (starting with a letter or digit, "
            "no '..', at most 100 characters)"
        )
    return name


def check_safe_name(name: str, what: str) -> str:
    """`check_name` for names read from records: a `ConfigError` naming `what`."""
    try:
        return check_name(name)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None


def inside(root: Path, path: Path, what: str) -> Path:
    """`path`, after checking that it resolves to a place inside `root` (symlinks followed).

    Raises:
        ConfigError: `path` would leave `root`.
    """
    if not resolves_inside(root, path):
        raise ConfigError(f"{path}: {what} would be written outside {root}; refused")
    return path


def resolves_inside(root: Path, path: Path) -> bool:
    """True when `path` (symlinks followed) is `root` or lies under it.

    Raises:
        OSError, RuntimeError: a name too long, a symlink loop (as `Path.resolve`).
    """
    real_root, real = Path(root).resolve(), Path(path).resolve()
    return real == real_root or real_root in real.parents


def in_run_folder(path: Path) -> bool:
    """True when `path` lies inside a folder whose marker says it is an edgedistill run (everything there is ours)."""
    return any(marker_kind(p) == "run" for p in Path(path).absolute().parents)


def _read_marker(folder: Path) -> dict[str, object] | None:
    m = folder / MARKER
    if m.is_symlink() or not m.is_file():
        return None
    try:
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested absurdly deep: not our marker
        return None
    if not isinstance(data, dict) or data.get("created_by") != "edgedistill":
        return None
    return data


def marker_kind(folder: Path) -> str | None:
    """The kind recorded in `folder`'s marker, or None when edgedistill did not make `folder`."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return None
    data = _read_marker(folder)
    return str(data.get("kind")) if data else None


def _write_marker(folder: Path, kind: str, files: dict[str, str]) -> None:
    data = {"created_by": "edgedistill", "kind": kind, "files": dict(sorted(files.items()))}
    atomic_write_text(folder / MARKER, json.dumps(data, indent=2) + "\n")


def check_output_dir(folder: Path, option: str, *, replace: bool = False, kinds: tuple[str, ...] = ()) -> None:
    """Refuse, before anything is written, an output folder that would lose what is in it.

    Args:
        folder: where the command will write.
        option: the option that named it (`--out`), for the error line.
        replace: the command will delete the folder's contents first (`--overwrite`).
        kinds: marker kinds accepted for an existing non-empty folder; empty = any existing folder may receive new
            files (existing files are then checked one by one with `check_replace`).

    Raises:
        ConfigError: `folder` is a file or a symlink, or holds files that edgedistill did not make.
    """
    folder = Path(folder)
    if folder.is_symlink():
        raise ConfigError(f"{folder}: {option} is a symbolic link; give the real folder (edgedistill never follows it)")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: {option} is a file; expected a folder")
    if not folder.exists() or not any(folder.iterdir()):
        return
    kind = marker_kind(folder)
    if (replace or kinds) and (kind is None or (kinds and kind not in kinds)):
        what = "delete" if replace else "write into"
        made = f"an edgedistill {'/'.join(kinds)} folder" if kinds else "made by edgedistill"
        raise ConfigError(
            f"{folder}: {option} holds files and is not {made} (no {MARKER}); edgedistill will not {what} it: "
            "give a new or empty folder"
        )


def claim_dir(folder: Path, kind: Kind) -> Path:
    """Create `folder` (and its marker) if needed; an existing marker is kept as it is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if _read_marker(folder) is None:
        _write_marker(folder, kind, {})
    return folder


def remove_owned_dir(folder: Path, option: str) -> None:
    """Delete `folder` when its marker says edgedistill made it (checked again here, just before deleting)."""
    folder = Path(folder)
    check_output_dir(folder, option, replace=True)
    if folder.is_dir():
        shutil.rmtree(folder)


def _recorded(path: Path) -> bool:
    if in_run_folder(path):
        return True
    data = _read_marker(path.parent)
    files = data.get("files") if data else None
    return isinstance(files, dict) and files.get(path.name) == sha256_file(path)


def json_marked(key: str, value: object) -> Callable[[Path], bool]:
    """A test for `check_replace`: the file is a JSON object whose `key` is `value` (a record edgedistill wrote)."""

    def ours(path: Path) -> bool:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get(key) == value

    return ours


def check_replace(path: Path, option: str = "", ours: Callable[[Path], bool] | None = None) -> None:
    """Refuse to replace `path` unless edgedistill wrote it (recorded in its folder's marker, unchanged since).

    Args:
        ours: another way to recognise edgedistill's own file (a record that names its writer, `json_marked`).

    Raises:
        ConfigError: `path` exists and is not edgedistill's, or is not a regular file.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    where = f" ({option})" if option else ""
    if path.is_symlink() or not path.is_file():
        raise ConfigError(f"{path}: exists and is not a regular file{where}; edgedistill will not replace it")
    if not (_recorded(path) or (ours is not None and ours(path))):
        raise ConfigError(
            f"{path}: exists and was not written by edgedistill (or was changed since){where}; move it away or "
            "choose another folder"
        )


def record_files(folder: Path, kind: Kind, names: list[str]) -> None:
    """Add `names` (files just written in `folder`) to its marker, with their sha256."""
    folder = Path(folder)
    data = _read_marker(folder) or {}
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    assert isinstance(files, dict)
    files = {str(k): str(v) for k, v in files.items() if (folder / str(k)).is_file()}
    for name in names:
        files[name] = sha256_file(folder / name)
    _write_marker(folder, str(data.get("kind", kind)), files)


def forget_file(folder: Path, name: str) -> None:
    """Remove `name` from disk and from `folder`'s marker, when edgedistill wrote it; otherwise leave it."""
    path = Path(folder) / name
    if path.is_file() and not path.is_symlink() and _recorded(path):
        path.unlink()
        data = _read_marker(Path(folder))
        recorded = data.get("files") if data is not None else None
        if data is not None and isinstance(recorded, dict):
            files = {str(k): str(v) for k, v in recorded.items() if k != name}
            _write_marker(Path(folder), str(data.get("kind")), files)
