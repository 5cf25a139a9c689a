"""Console for command output: wide enough for the result tables when output is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console


def console(stderr: bool = False) -> Console:
    """A rich Console; logs and pipes get 120 columns instead of rich's 80-column fallback."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 120
    return Console(stderr=stderr, width=width, soft_wrap=stderr)


def print_verdict(verdict: str, where: str, fail_on_budget: bool) -> None:
    """The coloured budget verdict with the path of its record; exit 1 unless PASS when `fail_on_budget` (CI gating)."""
    import typer

    color = "green" if verdict == "PASS" else "red"
    console().print(f"verdict: [bold {color}]{verdict}[/]   {where}")
    if fail_on_budget and verdict != "PASS":
        raise typer.Exit(1)
