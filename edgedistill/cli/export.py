"""`edgedistill export`: chosen subnet → ONNX → quantized artifact with manifest and accuracy guard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgedistill.cli.console import console
from edgedistill.errors import ConfigError


def export(
    run: Annotated[Path, typer.Option(help="run folder made by `edgedistill train`")] = Path("runs/demo"),
    budget: Annotated[Path | None, typer.Option(help="another budget for the same bank (default: the run's)")] = None,
    target: Annotated[str | None, typer.Option(help="runtime override: onnxruntime | openvino | tensorrt")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 (static PTQ)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16")] = False,
    fp32: Annotated[bool, typer.Option("--fp32", help="FP32 only")] = False,
    calibration_samples: Annotated[int | None, typer.Option(min=1, help="override the recipe's count")] = None,
    allow_small_calibration: Annotated[bool, typer.Option(help="accept fewer than 300 calibration images")] = False,
) -> None:
    """Export the run's chosen subnet for its budget (FP32 ONNX reference + the budget's precision)."""
    from edgedistill.pipeline.export import export_run

    chosen = [p for p, on in (("int8", int8), ("fp16", fp16), ("fp32", fp32)) if on]
    if len(chosen) > 1:
        raise ConfigError(f"choose one precision, got {', '.join('--' + c for c in chosen)}")
    manifests = export_run(
        run,
        budget=budget,
        runtime=target,
        precision=chosen[0] if chosen else None,
        calibration_samples=calibration_samples,
        allow_small_calibration=allow_small_calibration,
    )
    table = Table(title=f"exported {run}")
    for col in ("artifact", "runtime", "precision", "MACs M", "params M", "FP32 top-1", "top-1", "drop", "agree"):
        table.add_column(col, justify="right" if col not in ("artifact", "runtime", "precision") else "left")
    for m in manifests:
        a = m.accuracy
        q = a.quantized if a.quantized is not None else a.fp32
        table.add_row(
            m.name,
            m.runtime,
            m.precision,
            f"{m.cost.macs / 1e6:.2f}",
            f"{m.cost.params / 1e6:.3f}",
            f"{a.fp32:.2f}",
            f"{q:.2f}",
            "-" if a.drop_pts is None else f"{a.drop_pts:+.2f}",
            "-" if a.agreement is None else f"{a.agreement:.2f}",
        )
    console().print(table)
    console().print(f"artifacts: {Path(run) / 'export'}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
