"""Progress of long loops: a rich bar on a terminal, periodic plain lines in a log file or a pipe.

A rich bar draws nothing in a file until it stops, so when the stream is not a terminal (nor a
notebook) `progress` prints a line every `every_pct` percent or `every_s` seconds instead:

    train: step 120/300 (40%), 35 s elapsed, ~52 s left  ce=0.412 kd=0.318
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class Tracker:
    """Counts work done; `progress` hands out one (quiet when progress is off)."""

    def __init__(self, label: str, total: int, completed: int = 0) -> None:
        self.label, self.total, self.completed = label, total, completed
        self.description, self.info = "", ""

    def advance(self, n: int = 1) -> None:
        """`n` more units done."""
        self.update(completed=self.completed + n)

    def update(self, *, completed: int | None = None, description: str | None = None, info: str | None = None) -> None:
        """Set the units done, what is being worked on (shown after the label) or trailing info (e.g. losses)."""
        if completed is not None:
            self.completed = completed
        if description is not None:
            self.description = description
        if info is not None:
            self.info = info
        self._show()

    def _show(self) -> None:
        """Redraw (nothing for a quiet tracker)."""

    def _close(self) -> None:
        """Final output (nothing for a quiet tracker)."""


def duration(seconds: float) -> str:
    """`35 s`, `4.2 min` or `1.5 h`."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"


class LineTracker(Tracker):
    """Prints a plain line each time another `every_pct` percent is done or `every_s` seconds passed, and at the end."""

    def __init__(
        self,
        label: str,
        total: int,
        completed: int,
        *,
        unit: str,
        stream: TextIO,
        every_pct: float = 10.0,
        every_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(label, total, completed)
        self.unit, self.stream, self.every_pct, self.every_s, self.clock = unit, stream, every_pct, every_s, clock
        self.start_time = self.last_time = clock()
        self.start = self.printed = completed
        self.finished = False
        self.bucket = self._bucket()

    def _bucket(self) -> int:
        return math.floor(100 * self.completed / self.total / self.every_pct) if self.total > 0 else 0

    def line(self) -> str:
        """The current state as one line."""
        name = f"{self.label} {self.description}" if self.description else self.label
        pct = f" ({100 * self.completed / self.total:.0f}%)" if self.total > 0 else ""
        elapsed = self.clock() - self.start_time
        text = f"{name}: {self.unit} {self.completed}/{self.total}{pct}, {duration(elapsed)} elapsed"
        done = self.completed - self.start
        if done > 0 and self.completed < self.total and not self.finished:
            text += f", ~{duration(elapsed / done * (self.total - self.completed))} left"
        return text + (f"  {self.info}" if self.info else "")

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.printed, self.last_time, self.bucket = self.completed, self.clock(), self._bucket()

    def _show(self) -> None:
        if self.completed == self.printed:
            return
        if self._bucket() > self.bucket or self.clock() - self.last_time >= self.every_s:
            self._print()

    def _close(self) -> None:
        self.finished = True  # a loop that stops early (no more configs to try) has nothing left
        if self.completed != self.printed:
            self._print()


class BarTracker(Tracker):
    """A rich progress bar (description, bar, done/total, elapsed, remaining, info)."""

    def __init__(self, label: str, total: int, completed: int, bar: Any) -> None:
        super().__init__(label, total, completed)
        self.bar = bar
        self.task = bar.add_task(label, total=total, completed=completed, info="")

    def _show(self) -> None:
        name = f"{self.label} {self.description}" if self.description else self.label
        self.bar.update(self.task, completed=self.completed, description=name, info=self.info)


@contextmanager
def progress(
    label: str,
    total: int,
    *,
    show: bool = True,
    unit: str = "step",
    completed: int = 0,
    transient: bool = False,
    stream: TextIO | None = None,
    every_pct: float = 10.0,
    every_s: float = 20.0,
) -> Iterator[Tracker]:
    """Track `total` units of work: a rich bar on a terminal, plain lines otherwise, nothing when not `show`.

    Args:
        label: What runs, first on every line ("train", "search (evolutionary)").
        unit: What is counted, singular ("step", "config", "image").
        completed: Units already done (a resumed run).
        transient: Remove the rich bar when done (plain lines stay).
        stream: Where to write; default stdout.
        every_pct: Plain lines: print each time this many more percent are done...
        every_s: ...or this many seconds passed since the last line.
    """
    if not show:
        yield Tracker(label, total, completed)
        return
    from rich.console import Console

    out = stream if stream is not None else sys.stdout
    console = Console(file=out)
    if not (console.is_terminal or console.is_jupyter):
        tracker = LineTracker(label, total, completed, unit=unit, stream=out, every_pct=every_pct, every_s=every_s)
        yield tracker
        tracker._close()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=transient) as bar:
        yield BarTracker(label, total, completed, bar)
