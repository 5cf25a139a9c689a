"""`edgedistill report`: one report of a run (training, search, exports, latency, budget verdict)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run: Annotated[Path, typer.Argument(help="run folder, e.g. runs/demo")] = Path("runs/demo"),
    out: Annotated[Path | None, typer.Option(help="output folder (default: RUN/report)")] = None,
    budget: Annotated[Path | None, typer.Option(help="judge against this budget (default: the run's)")] = None,
    fail_on_budget: Annotated[bool, typer.Option(help="exit 1 when the verdict is not PASS (CI gating)")] = False,
) -> None:
    """Merge train, search, export and bench JSON into report.md + report.json + PNGs; print the verdict."""
    from edgedistill.api.stages import report as report_stage
    from edgedistill.cli.console import console, print_verdict

    rep = report_stage(run, out=out, budget=budget)
    con = console()
    for part in rep.missing:
        con.print(f"[yellow]missing:[/] {part}")
    if rep.precision_choice is not None:
        con.print(rep.precision_choice.summary())
    print_verdict(rep.verdict, f"report: {rep.markdown}", fail_on_budget)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
