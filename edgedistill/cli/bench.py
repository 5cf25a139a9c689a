"""`edgedistill bench`: latency of an artifact on this machine, tails, memory, PASS/FAIL vs the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def bench(
    run: Annotated[Path | None, typer.Option(help="run folder: benchmarks the budget's artifact")] = None,
    artifact: Annotated[Path | None, typer.Option(help="an artifact folder (runs/NAME/export/TARGET)")] = None,
    budget: Annotated[Path | None, typer.Option(help="judge against this budget (default: the run's)")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="default: the budget's target.threads")] = None,
    runs: Annotated[int, typer.Option(min=10, help="timed calls")] = 200,
    warmup: Annotated[int, typer.Option(min=0, help="untimed calls first")] = 20,
    batch: Annotated[int | None, typer.Option(min=1, help="default: the budget's input.batch")] = None,
    reference: Annotated[bool, typer.Option(help="also time FP32 ONNX and torch eager FP32")] = True,
    fail_on_budget: Annotated[bool, typer.Option(help="exit 1 when the verdict is FAIL")] = False,
) -> None:
    """Time the artifact in its own process (and references in theirs), print tails and the verdict."""
    from edgedistill.bench.table import latency_table, verdict_table
    from edgedistill.cli.console import console
    from edgedistill.pipeline.bench import bench_run, checks_of

    if run is None and artifact is None:
        run = Path("runs/demo")
    rec = bench_run(
        run,
        artifact=artifact,
        budget=budget,
        threads=threads,
        runs=runs,
        warmup=warmup,
        batch=batch,
        reference=reference,
    )
    con = console()
    acc = rec["accuracy"]
    con.print(
        f"accuracy on {acc['split']} ({acc['n']} images): FP32 {acc['fp32']:.2f}%"
        + (f", {rec['precision'].upper()} {acc['quantized']:.2f}%" if acc.get("quantized") is not None else "")
    )
    con.print(
        latency_table(rec["results"], title=f"latency on this machine ({rec['results'][0]['machine'].get('cpu', '')})")
    )
    con.print(verdict_table(checks_of(rec), title=f"budget {rec['budget']}"))
    color = "green" if rec["verdict"] == "PASS" else "red"
    con.print(f"verdict: [bold {color}]{rec['verdict']}[/]   report: {Path(rec['artifact']) / 'bench.json'}")
    if fail_on_budget and rec["verdict"] != "PASS":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
