"""The run folder `train` writes: checked before any work, locked while training, swapped in whole on `--overwrite`.

`--overwrite` never deletes the previous run first: the new run is built in a sibling folder and replaces the old
one only when it is complete (`rundir_guard.swap_in`). An interrupted overwrite leaves the previous run whole.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.errors import ConfigError
from edgedistill.options import opt, param
from edgedistill.outputs import check_output_dir, claim_dir, marker_kind
from edgedistill.run import RunDir
from edgedistill.rundir_guard import NEW, sibling, staged, swap_in, writing


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is read or written, a `--out` whose files would be lost or replaced."""
    out = Path(out)
    check_output_dir(out, param("out"), replace=overwrite, kinds=("run",) if resume else ())
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
        what = "run folder exists" if marker_kind(out) == "run" else "folder exists and is not empty"
        raise ConfigError(f"{out}: {what}; pass {opt('resume')} to continue it or {opt('overwrite')} to replace it")


def replaces(out: Path, overwrite: bool) -> bool:
    """True when this `train` builds a new run beside an existing one (`--overwrite` of a non-empty folder)."""
    out = Path(out)
    return overwrite and out.is_dir() and any(out.iterdir())


def build_dir(out: Path, overwrite: bool) -> RunDir:
    """Where training writes: `out` itself, or its staging sibling when it replaces an existing run."""
    return RunDir(sibling(out, NEW) if replaces(out, overwrite) else Path(out))


@dataclass
class TrainDir:
    """The held run folder: `rd` is where this run writes; `finish()` swaps it into `out` when it was staged."""

    out: Path
    rd: RunDir
    _stack: ExitStack = field(default_factory=ExitStack)

    def finish(self) -> None:
        if self.rd.root != self.out:
            swap_in(self.rd.root, self.out)

    def close(self) -> None:
        self._stack.close()


def open_dir(out: Path, resume: bool, overwrite: bool) -> TrainDir:
    """After every input was checked: lock `out`, check it again under the lock, create the folder that is written.

    The lock is held until `TrainDir.close()`; a second `train` into the same folder fails at once.
    """
    out = Path(out)
    stack = ExitStack()
    try:
        out.mkdir(parents=True, exist_ok=True)  # an empty folder to lock; the checks below refuse what is not ours
        stack.enter_context(writing(out, "train"))
        check_out(out, resume, overwrite)  # again, under the lock: another writer may have finished meanwhile
        rd = RunDir(staged(out)) if replaces(out, overwrite) else RunDir(out)
        claim_dir(rd.root, "run")
    except BaseException:
        stack.close()
        raise
    return TrainDir(out, rd, stack)
