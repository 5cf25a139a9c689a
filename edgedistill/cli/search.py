"""`edgedistill search`: widths of a trained bank for a budget, without retraining; writes search.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table


def _fmt_ms(stats: dict[str, float] | None, stat: str) -> str:
    return "-" if stats is None else f"{stats[stat]:.3f}"


def search(
    budget: Annotated[Path | None, typer.Option(help="budget YAML (default: the run's)")] = None,
    run: Annotated[Path, typer.Option(help="run folder made by `edgedistill train`")] = Path("runs/demo"),
    strategy: Annotated[str, typer.Option(help="auto | exhaustive | evolutionary | greedy | predictor")] = "auto",
    upem: Annotated[
        str, typer.Option(help="agreement-widest | agreement | entropy | discrepancy (needs OSTC heads)")
    ] = "agreement-widest",
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="strategy seed")] = 0,
    population: Annotated[int, typer.Option(min=2, help="evolutionary population")] = 100,
    evaluations: Annotated[int, typer.Option(min=1, help="evolutionary: configs scored at most")] = 500,
    time_budget: Annotated[
        float, typer.Option(min=0.001, help="auto: seconds of scoring; slower scores switch to the predictor")
    ] = 60.0,
    measure: Annotated[str, typer.Option(help="auto | on | off: time the shortlist end to end here")] = "auto",
    shortlist: Annotated[int, typer.Option(min=1, help="configs measured first, best UPEM first")] = 3,
    measure_limit: Annotated[
        int, typer.Option(min=1, help="no latency table: most configs measured in all if the shortlist is too slow")
    ] = 6,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Pick the widths for BUDGET from the run's bank: cost models + latency table, UPEM, measured shortlist."""
    from edgedistill.api.stages import search as search_stage
    from edgedistill.cli.console import console

    result = search_stage(
        run,
        budget,
        strategy=strategy,
        upem=upem,
        seed=seed,
        time_budget=time_budget,
        population=population,
        evaluations=evaluations,
        measure=measure,  # type: ignore[arg-type]  # checked by the API
        shortlist=shortlist,
        measure_limit=measure_limit,
        progress=progress,
    )
    stat = result.latency_stat
    table = Table(title=f"{result.budget}: best configs by UPEM '{result.upem}' ({result.strategy})")
    int8 = any(c.int8_agreement is not None for c in [result.chosen, *result.runner_ups, *result.measured])
    cols: tuple[str, ...] = ("", "widths", "channels", "MACs M", "params M", f"pred {stat} ms", f"meas {stat} ms")
    cols += ("UPEM", "95% CI", *(("INT8 UPEM",) if int8 else ()))
    for col in cols:
        table.add_column(col, justify="left" if col in ("", "widths", "channels") else "right")
    for c in [result.chosen, *result.runner_ups]:
        table.add_row(
            "chosen" if c is result.chosen else "",
            str(list(c.config)),
            str(c.channels),
            f"{c.macs / 1e6:.2f}",
            f"{c.params / 1e6:.3f}",
            _fmt_ms(c.latency_ms, stat),
            _fmt_ms(c.measured_ms, stat),
            f"{c.upem:.3f}",
            "-" if c.upem_ci is None else f"{c.upem_ci[0]:.3f}–{c.upem_ci[1]:.3f}",
            *(("-" if c.int8_agreement is None else f"{c.int8_agreement:.3f}",) if int8 else ()),
        )
    con = console()
    con.print(table)
    con.print(
        f"{result.evaluated} feasible configs scored of {result.space} ({result.rejected} rejected by cost) in "
        f"{result.seconds:.1f} s; {len(result.measured)} measured in {result.measure_seconds:.1f} s"
    )
    for m in result.measure_log:
        verdict = f"{stat} {m['measured_ms'][stat]:.3f} ms, fits" if m["fits"] else "; ".join(m["over"])
        if m.get("int8_quality") is not None:
            verdict += f", INT8 UPEM {m['int8_quality']:.3f}"
        con.print(f"measured {m['config']}: {verdict} ({m['why']})")
    for note in result.notes:
        con.print(f"[yellow]note:[/] {note}")
    if result.confidence and result.confidence.get("warning"):
        con.print(f"[yellow]warning:[/] {result.confidence['warning']}")
    con.print(f"search.json: {result.json}  subnet: {result.subnet}  plot: {result.plot}")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
