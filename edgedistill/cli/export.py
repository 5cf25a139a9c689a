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
    recipe: Annotated[
        Path | None, typer.Option(help="export recipe: a shipped name (openvino-int8-ac) or a YAML file")
    ] = None,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 (static PTQ)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16")] = False,
    fp32: Annotated[bool, typer.Option("--fp32", help="FP32 only")] = False,
    calibration_samples: Annotated[int | None, typer.Option(min=1, help="override the recipe's count")] = None,
    allow_small_calibration: Annotated[bool, typer.Option(help="accept fewer than 300 calibration images")] = False,
    fallback: Annotated[
        str,
        typer.Option(
            help="none | auto: when INT8 misses the budget, bias correction, then AdaRound, then the most "
            "sensitive layers in float, then QAD if that misses too or keeps most layers in float | qat: "
            "quantization-aware distillation"
        ),
    ] = "none",
    sensitivity_images: Annotated[
        int | None, typer.Option(help="INT8: unlabeled images for the per-layer sensitivity report (0: none)")
    ] = None,
    sensitivity_top_k: Annotated[
        int | None, typer.Option(help="INT8: layers whose single-layer disagreement is measured (0: SQNR only)")
    ] = None,
    qad_steps: Annotated[int | None, typer.Option(help="QAD fine-tuning steps (recipe qad.steps, default 300)")] = None,
    qad_lr: Annotated[float | None, typer.Option(help="QAD learning rate (recipe qad.lr, default 1e-4)")] = None,
) -> None:
    """Export the run's chosen subnet for its budget (FP32 ONNX reference + the budget's precision, or all on auto)."""
    from edgedistill.api.stages import export as export_stage

    chosen = [p for p, on in (("int8", int8), ("fp16", fp16), ("fp32", fp32)) if on]
    if len(chosen) > 1:
        raise ConfigError(f"choose one precision, got {', '.join('--' + c for c in chosen)}")
    result = export_stage(
        run,
        budget=budget,
        target=target,
        precision=chosen[0] if chosen else None,  # type: ignore[arg-type]
        recipe=recipe,
        calibration_samples=calibration_samples,
        allow_small_calibration=allow_small_calibration,
        fallback=fallback,  # type: ignore[arg-type]  # checked by the API
        sensitivity_images=sensitivity_images,
        sensitivity_top_k=sensitivity_top_k,
        qad_steps=qad_steps,
        qad_lr=qad_lr,
    )
    manifests = result.manifests
    table = Table(title=f"exported {run}")
    cols = [
        "artifact",
        "runtime",
        "precision",
        "MACs M",
        "params M",
        "FP32 top-1",
        "top-1",
        "balanced",
        "drop",
        "agree",
    ]
    for col in cols:
        table.add_column(col, justify="right" if col not in ("artifact", "runtime", "precision") else "left")
    for m in manifests:
        a = m.accuracy
        q = a.artifact if a.artifact is not None else a.fp32
        table.add_row(
            m.name,
            m.runtime,
            m.precision,
            f"{m.cost.macs / 1e6:.2f}",
            f"{m.cost.params / 1e6:.3f}",
            f"{a.fp32:.2f}",
            f"{q:.2f}",
            _balanced(a.balanced if a.balanced is not None else a.fp32_balanced),
            "-" if a.drop_pts is None else f"{a.drop_pts:+.2f}" + (" (bal.)" if a.metric == "balanced" else ""),
            "-" if a.agreement is None else f"{a.agreement:.2f}",
        )
    console().print(table)
    for m in manifests:
        if m.ladder is not None:
            steps = " → ".join(f"{r.rung} {r.drop_pts:+.2f}" for r in m.ladder.rungs)
            kept = f"kept {m.ladder.chosen}" if m.ladder.chosen else "none fit"
            console().print(f"{m.name}: post-training ladder (drop, pts): {steps}; {kept}")
        if m.fallback is not None:
            f = m.fallback
            state = "fixed" if f.fixed else "NOT fixed"
            lat = ", ".join(f"{k} {v:.3f} ms" for k, v in f.latency_p50_ms.items()) or (f.latency_note or "-")
            console().print(
                f"fallback ({state}): {len(f.layers_in_fp)}/{f.quantizable_layers} layers in float "
                f"[{', '.join(f.layers_in_fp)}]; drop {f.drop_before_pts:+.2f} → {f.drop_after_pts:+.2f} pts; "
                f"p50 {lat}"
            )
        if m.sensitivity is not None:
            sens = m.sensitivity
            console().print(
                f"{m.name}: INT8 sensitivity on {sens.images} unlabeled images, most sensitive: {sens.worst_text(3)} "
                f"(all of it: manifest.json 'sensitivity', `edgedistill report`)"
            )
        if m.qad is not None:
            qad = m.qad
            after = "-" if qad.drop_after_pts is None else f"{qad.drop_after_pts:+.2f}"
            console().print(
                f"QAD: {qad.steps} steps on {qad.images} pool images in {qad.seconds:.1f} s; drop "
                f"{qad.drop_before_pts:+.2f} → {after} pts; agreement with its fake-quant model "
                f"{qad.parity.get('agreement_pct', 0):.2f}%"
            )
        if m.engine is not None:
            console().print(f"{m.name}: engine {m.engine.file or 'not built'} ({m.engine.reason or m.engine.tensorrt})")
    for note in result.notes:
        console().print(note)
    console().print(f"artifacts: {Path(run) / 'export'}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def _balanced(value: float | None) -> str:
    """Balanced accuracy (mean per-class accuracy), or '-' for a manifest written before it was recorded."""
    return "-" if value is None else f"{value:.2f}"
