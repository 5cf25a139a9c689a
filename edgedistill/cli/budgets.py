"""`edgedistill budgets [PATH]`: list and validate budget files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgedistill.api.teachers import budgets as budget_list
from edgedistill.cli.console import console
from edgedistill.errors import BudgetError


def budgets(
    path: Annotated[Path, typer.Argument(help="a budget file or a folder of them")] = Path("budgets"),
) -> None:
    """List and validate device budgets; exit 2 if any is invalid."""
    listing = budget_list(path)
    table = Table(title=f"budgets in {path}")
    for col in ("name", "runtime", "precision", "input", "latency ms", "params M", "MACs M", "memory MB", "status"):
        table.add_column(col)
    for entry in listing.entries:
        if entry.budget is None:
            table.add_row(entry.path.name, "", "", "", "", "", "", "", "[red]invalid[/]")
            continue
        b, lim = entry.budget.budget, entry.budget.budget.limits
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
    if not listing.valid:
        raise BudgetError(" | ".join(listing.errors))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def register(app: typer.Typer) -> None:
    app.command("budgets")(budgets)
