"""`edgedistill budgets [PATH]`: list and validate budget files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgedistill.budget import find_budgets, load_budget
from edgedistill.cli.console import console
from edgedistill.errors import BudgetError, EdgedistillError


def budgets(
    path: Annotated[Path, typer.Argument(help="a budget file or a folder of them")] = Path("budgets"),
) -> None:
    """List and validate device budgets; exit 2 if any is invalid."""
    table = Table(title=f"budgets in {path}")
    for col in ("name", "runtime", "precision", "input", "latency ms", "params M", "MACs M", "memory MB", "status"):
        table.add_column(col)
    bad: list[str] = []
    for f in find_budgets(path):
        try:
            r = load_budget(f)
        except EdgedistillError as e:
            bad.append(str(e))
            table.add_row(f.name, "", "", "", "", "", "", "", "[red]invalid[/]")
            continue
        b, lim = r.budget, r.budget.limits
        lat = ", ".join(f"{k} {v:g}" for k, v in lim.latency_ms.items()) if lim.latency_ms else "-"
        table.add_row(
            b.name,
            b.target.runtime,
            b.target.precision,
            f"{b.input.channels}x{b.input.height}x{b.input.width}",
            lat,
            _fmt(lim.params_m),
            _fmt(lim.macs_m),
            _fmt(lim.peak_memory_mb),
            "[green]ok[/]",
        )
    console().print(table)
    if bad:
        raise BudgetError(" | ".join(bad))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def register(app: typer.Typer) -> None:
    app.command("budgets")(budgets)
