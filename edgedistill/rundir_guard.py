"""Guards for commands that write into a run folder: one writer at a time, no symlinks, whole-folder swaps.

- `writing(root)`: an exclusive lock on the run folder (`flock` on the folder itself, so no lock file is left
  behind) held for the whole command; a second writer fails at once with one line. Every path inside the run is
  checked first: a symbolic link anywhere in it is refused, so nothing is read from or written to a place outside
  the run (a linked `checkpoint/` would have had its files pruned).
- `staged(final)` / `swap_in(staged, final)`: a command that replaces a whole folder builds the new one in a
  sibling (`.NAME.edgedistill-new`) and swaps it in only when it is complete; the previous folder stays whole
  until then (interrupted: the old folder is untouched and the half-built sibling is removed by the next try).

Standard library only: the report stage uses it without torch.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from edgedistill.errors import ConfigError
from edgedistill.outputs import in_run_folder, marker_kind

P = ParamSpec("P")
R = TypeVar("R")
NEW, OLD = ".edgedistill-new", ".edgedistill-old"
MAX_ENTRIES = 200_000  # a run folder holds hundreds of files; far more is not a run folder


def check_no_links(root: Path) -> None:
    """Refuse a run folder with a symbolic link anywhere inside it (walked without following links).

    Raises:
        ConfigError: names the first link (or a folder too large to be a run folder).
    """
    root = Path(root)
    if root.is_symlink():
        raise ConfigError(f"{root}: the run folder is a symbolic link; give the real folder")
    if not root.is_dir():
        return
    seen = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            seen += 1
            path = Path(folder) / name
            if path.is_symlink():
                raise ConfigError(
                    f"{path}: a symbolic link inside the run folder; edgedistill reads and writes only real files "
                    "inside a run: replace it with the file or folder it points to, or remove it"
                )
        if seen > MAX_ENTRIES:
            raise ConfigError(f"{root}: more than {MAX_ENTRIES} entries; not a run folder")


@contextmanager
def writing(root: Path, what: str) -> Iterator[None]:
    """Hold the run folder's writer lock (when the folder exists) after checking it holds no symbolic links.

    Raises:
        ConfigError: another edgedistill command holds the lock, or `check_no_links` refuses the folder.
    """
    root = Path(root)
    check_no_links(root)
    if not root.is_dir():
        yield
        return
    fd = _lock(root, what)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock(root: Path, what: str) -> int:
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; one writer is then the user's responsibility
        return os.open(root, os.O_RDONLY)
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"{root}: another edgedistill command is writing to this run folder; wait for it to finish ({what})"
        ) from None
    return fd


def sibling(final: Path, suffix: str) -> Path:
    """`parent/.NAME<suffix>`: a hidden folder next to `final` on the same file system (rename stays atomic)."""
    final = Path(final)
    return final.parent / f".{final.name}{suffix}"


def staged(final: Path) -> Path:
    """A fresh, empty staging folder next to `final`; a half-built one left by an interrupted try is removed.

    Raises:
        ConfigError: the staging path holds something edgedistill did not make.
    """
    stage = sibling(final, NEW)
    if os.path.lexists(stage):
        if stage.is_symlink() or not _ours(stage):
            raise ConfigError(f"{stage}: exists and was not made by edgedistill; move it away and retry")
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def _ours(folder: Path) -> bool:
    """A folder edgedistill made: it has a marker, or it lies inside a run folder (an artifact being built)."""
    return marker_kind(folder) is not None or in_run_folder(folder)


def swap_in(stage: Path, final: Path) -> None:
    """Replace `final` by the complete folder `stage`: rename the old one aside, rename the new one in, delete the old.

    Between the two renames (microseconds) a crash leaves both folders whole: the new run in `.NAME.edgedistill-new`,
    the previous one in `.NAME.edgedistill-old`.
    """
    old = sibling(final, OLD)
    if os.path.lexists(old):
        if old.is_symlink() or not _ours(old):
            raise ConfigError(f"{old}: exists and was not made by edgedistill; move it away and retry")
        shutil.rmtree(old)
    had_old = Path(final).is_dir()
    if had_old:
        os.replace(final, old)
    os.replace(stage, final)
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


def writes_run(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a stage whose first argument is a run folder: it runs under `writing(run, what)`.

    A stage called with no run (`bench --artifact DIR`) uses the artifact's run (`DIR/../..`) when there is one.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = args[0] if args else kwargs.get("run")
            if run is None and kwargs.get("artifact") is not None:
                run = Path(str(kwargs["artifact"])).parent.parent
            if run is None or marker_kind(Path(str(run))) != "run":  # not a run folder: the stage says what is wrong
                return fn(*args, **kwargs)
            with writing(Path(str(run)), what):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
