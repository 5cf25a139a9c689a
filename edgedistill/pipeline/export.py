"""The `export` stage: chosen subnet → FP32 ONNX → the target artifact, each with a verified manifest."""

from __future__ import annotations

import difflib
from pathlib import Path

from edgedistill.errors import ConfigError
from edgedistill.export.accuracy import Accuracy, onnx_accuracy
from edgedistill.export.exporters import EXPORTERS
from edgedistill.export.job import MIN_CALIBRATION, ExportJob, Fallback, RunContext, build_manifest
from edgedistill.export.manifest import AccuracyInfo, Manifest, write_manifest
from edgedistill.export.torch2onnx import onnx_parity, torch_to_onnx
from edgedistill.options import is_cli, opt, param
from edgedistill.outputs import check_output_dir, inside
from edgedistill.pipeline.context import load_context
from edgedistill.recipe import Recipe, load_recipe
from edgedistill.run import FP32_TARGET, find_recipe
from edgedistill.runtimes import RUNTIME_SPECS, check_runtime_precision

__all__ = ["EXPORTERS", "FP32_TARGET", "MIN_CALIBRATION", "ExportJob", "export_fp32", "export_run"]


def export_fp32(ctx: RunContext, recipe: Recipe) -> tuple[Manifest, Accuracy]:
    """ONNX FP32 with a torch parity check and held-out accuracy."""
    out = ctx.rd.export_dir(recipe.target)
    path = torch_to_onnx(
        ctx.subnet.cpu().eval(),
        ctx.resolved.budget.input.shape,
        out / "model.onnx",
        opset=recipe.opset,
        dynamic_batch=recipe.dynamic_batch,
    )
    batches = ctx.test_batches()
    # 1e-3: a Lite0 subnet (16 blocks) differs from torch by ~2e-4 in float32 through ORT's fused kernels; a wrong
    # graph differs by far more.
    onnx_parity(ctx.subnet, path, batches[0][0][:16], atol=1e-3)
    acc = onnx_accuracy(path, batches)
    info = AccuracyInfo(split="test", n=acc.n, fp32=acc.top1)
    manifest = build_manifest(ctx, recipe, info, None)
    write_manifest(out, manifest)
    return manifest, acc


def _resolve_recipe(ctx: RunContext, runtime: str | None, precision: str | None, recipe: Path | None) -> Recipe:
    """The recipe file given, the one for runtime/precision, or the budget's; incompatible asks fail in one line."""
    if recipe is not None:
        if runtime or precision:
            raise ConfigError(
                f"{param('recipe')} already names the runtime and precision; drop "
                + ("--target/--int8/--fp16/--fp32" if is_cli() else "target and precision")
            )
        return load_recipe(recipe)
    if runtime is None and precision is None:
        return ctx.resolved.recipe
    rt = runtime or ctx.resolved.budget.target.runtime
    prec = precision or ctx.resolved.budget.target.precision
    if rt not in RUNTIME_SPECS:
        close = difflib.get_close_matches(rt, RUNTIME_SPECS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{param('target')}: unknown runtime '{rt}'{hint} known: {', '.join(RUNTIME_SPECS)}")
    try:
        check_runtime_precision(rt, prec)
    except ValueError as e:
        raise ConfigError(f"{opt('target', rt)} {opt('precision', prec)}: {e}") from None
    if not RUNTIME_SPECS[rt].exporter:
        raise ConfigError(
            f"{opt('target', rt)}: {rt} is the training runtime; it has no export artifact (bench times it)"
        )
    return find_recipe(rt, prec)


def export_run(
    run: Path,
    *,
    budget: Path | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    recipe: Path | None = None,
    calibration_samples: int | None = None,
    allow_small_calibration: bool = False,
    fallback: Fallback = "none",
) -> list[Manifest]:
    """Export the run's chosen subnet for the budget's target (or the runtime/precision or recipe asked).

    Always writes the FP32 ONNX reference first; the target follows its recipe through the `EXPORTERS` registry.
    `fallback="auto"` lets an INT8 export that misses the accuracy budget keep its most sensitive layers in float.
    """
    ctx = load_context(run, budget)
    chosen = _resolve_recipe(ctx, runtime, precision, recipe)
    if fallback == "auto" and chosen.precision != "int8":
        raise ConfigError(f"{opt('fallback', 'auto')} needs an int8 target, not {chosen.target}")
    exporter = EXPORTERS.get(chosen.target) if chosen.target != FP32_TARGET else None
    for target in {FP32_TARGET, chosen.target}:  # artifact folders are the run's own: never a link out of it
        d = ctx.rd.export_dir(target)
        check_output_dir(d, param("run"))
        inside(ctx.rd.root, d, "an artifact folder")
    fp32_manifest, ref = export_fp32(ctx, find_recipe("onnxruntime", "fp32"))
    if exporter is None:
        return [fp32_manifest]
    fp32_path = ctx.rd.export_dir(FP32_TARGET) / "model.onnx"
    job = ExportJob(ctx, chosen, fp32_path, ref, calibration_samples, allow_small_calibration, fallback)
    return [fp32_manifest, exporter(job)]
