"""`edgedistill bench`: latency of an artifact on this machine, tails, memory, PASS/FAIL vs the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def bench(
    run: Annotated[Path | None, typer.Option(help="run folder: benchmarks the budget's artifact")] = None,
    artifact: Annotated[Path | None, typer.Option(help="an artifact folder (runs/NAME/export/TARGET)")] = None,
    budget: Annotated[Path | None, typer.Option(help="judge against this budget (default: the run's)")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="default: the budget's target.threads; max 4/CPU")] = None,
    runs: Annotated[int, typer.Option(min=10, help="minimum timed calls (at most 1,000,000)")] = 200,
    min_time: Annotated[float, typer.Option(min=0, help="minimum seconds of timed calls (at most 3600)")] = 1.0,
    warmup: Annotated[int, typer.Option(min=0, help="untimed calls first")] = 20,
    warmup_time: Annotated[float, typer.Option(min=0, help="minimum seconds of untimed calls")] = 0.0,
    batch: Annotated[int | None, typer.Option(min=1, help="default: the budget's input.batch; at most 4096")] = None,
    input: Annotated[
        str, typer.Option(help="random | calibration (real target images; times pre/infer/post) | FILE.npy")
    ] = "random",
    device: Annotated[str, typer.Option(help="cpu | cuda | tensorrt (ONNX Runtime EPs) | gpu (OpenVINO)")] = "cpu",
    reference: Annotated[bool, typer.Option(help="also time FP32 ONNX and torch eager FP32")] = True,
    widths: Annotated[bool, typer.Option(help="also time every uniform width of the bank (for the report)")] = False,
    fail_on_budget: Annotated[bool, typer.Option(help="exit 1 when the verdict is FAIL")] = False,
    emit_runner: Annotated[
        Path | None, typer.Option(help="instead of timing: write a folder to copy to the device (runner + artifact)")
    ] = None,
) -> None:
    """Time the artifact in its own process (and references in theirs), print tails and the verdict."""
    from edgedistill.api import stages
    from edgedistill.bench.table import latency_table, verdict_table
    from edgedistill.cli.console import console, print_verdict

    con = console()
    if emit_runner is not None:
        runner = stages.emit_runner(emit_runner, run=run, artifact=artifact, budget=budget)
        con.print(f"device runner: {runner.path}\n{runner.instructions}")
        return
    rec = stages.bench(
        run,
        artifact=artifact,
        budget=budget,
        threads=threads,
        runs=runs,
        min_time=min_time,
        warmup=warmup,
        warmup_time=warmup_time,
        batch=batch,
        input=input,
        device=device,
        reference=reference,
        widths=widths,
    )
    acc = rec.accuracy
    con.print(
        f"accuracy on {acc['split']} ({acc['n']} images): FP32 {acc['fp32']:.2f}%"
        + (f", {rec.precision.upper()} {acc['quantized']:.2f}%" if acc.get("quantized") is not None else "")
    )
    results = [r.raw for r in rec.latency]
    con.print(latency_table(results, title=f"latency on this machine ({results[0]['machine'].get('cpu', '')})"))
    for s in rec.int8_speedup:
        if s.pays:
            con.print(
                f"INT8 ({s.runtime}, {s.device}): {s.speedup_vs_best_fp32:.2f}× over the best FP32 ({s.best_fp32})"
            )
        else:
            con.print(f"[yellow]warning:[/yellow] {s.warning}")
    if rec.precision_choice is not None:
        con.print(f"precision auto: deployed {rec.precision_choice.target}")
        for reason in rec.precision_choice.reasons:
            con.print(f"  {reason}")
    for w in rec.widths:
        con.print(f"width {w.width:g}: top-1 {w.accuracy:.2f}%, onnxruntime fp32 p50 {w.stats['p50']:.3f} ms")
    con.print(verdict_table(rec.checks, title=f"budget {rec.budget}"))
    print_verdict(rec.verdict, f"report: {rec.json}", fail_on_budget)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
