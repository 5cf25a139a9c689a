"""`edgedistill profile`: per-block latency table of a run's bank for one runtime/precision/input on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def profile(
    runtime: Annotated[str, typer.Option(help="runtime to time: onnxruntime")] = "onnxruntime",
    precision: Annotated[str, typer.Option(help="int8 | fp32")] = "int8",
    input: Annotated[str, typer.Option("--input", help="input size HxW, e.g. 28x28")] = "28x28",
    run: Annotated[Path, typer.Option(help="run folder whose bank is profiled")] = Path("runs/demo"),
    threads: Annotated[int, typer.Option(min=1, help="intra-op threads, as the budget's target.threads")] = 1,
    batch: Annotated[int, typer.Option(min=1, help="batch, as the budget's input.batch")] = 1,
    out: Annotated[
        Path | None, typer.Option(help="LUT path (default: RUN/latency/<runtime>-<precision>-…json)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Time every distinct block shape of the bank (each exported, quantized like `export`, in its own process)."""
    from edgedistill.api.stages import profile as profile_stage
    from edgedistill.cli.console import console

    result = profile_stage(
        run, runtime=runtime, precision=precision, input=input, threads=threads, batch=batch, out=out, progress=progress
    )
    lut, path = result.lut, result.path
    console().print(
        f"{len(lut.blocks)} block shapes timed ({lut.runtime} {lut.precision}, {lut.threads} thread(s), input "
        f"{'x'.join(map(str, lut.input))}); per-call overhead p50 {lut.overhead_ms['p50']:.4f} ms → {path}"
    )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
