"""The `export` stage: chosen subnet → FP32 ONNX → quantized artifact, each with a verified manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from edgedistill.errors import ExportError
from edgedistill.export.accuracy import Accuracy, compare_accuracy, onnx_accuracy
from edgedistill.export.manifest import AccuracyInfo, CalibrationInfo, Cost, InputInfo, Manifest, Source, write_manifest
from edgedistill.export.manifest import Preprocess as PreprocessInfo
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.export.recipe import Recipe
from edgedistill.export.torch2onnx import onnx_parity, torch_to_onnx
from edgedistill.export.versions import runtime_versions
from edgedistill.io import sha256_file
from edgedistill.models import count_cost
from edgedistill.pipeline.context import RunContext, find_recipe, load_context
from edgedistill.registry import Registry

MIN_CALIBRATION = 300
FP32_TARGET = "onnxruntime-fp32"


def _manifest(ctx: RunContext, recipe: Recipe, acc: AccuracyInfo, calib: CalibrationInfo | None) -> Manifest:
    cost = count_cost(ctx.subnet, ctx.resolved.budget.input.shape)
    return Manifest(
        name=recipe.target,
        runtime=recipe.runtime,
        precision=recipe.precision,
        model_file="model.onnx",
        input=InputInfo(shape=[-1 if recipe.dynamic_batch else 1, *ctx.resolved.budget.input.shape[1:]]),
        preprocess=PreprocessInfo(**{k: v for k, v in ctx.pre.manifest().items() if k != "resize"}),
        class_names=ctx.data.class_names,
        source=Source(
            family=ctx.subnet.spec()["family"],
            config=ctx.config,
            channels=ctx.channels,
            subnet_sha256=sha256_file(ctx.subnet_path),
        ),
        opset=recipe.opset,
        versions=runtime_versions(),
        calibration=calib,
        accuracy=acc,
        cost=Cost(macs=cost.macs, params=cost.params),
        budget=ctx.resolved.budget.name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


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
    onnx_parity(ctx.subnet, path, batches[0][0][:16], atol=1e-4)
    acc = onnx_accuracy(path, batches)
    info = AccuracyInfo(split="test", n=acc.n, fp32=acc.top1)
    manifest = _manifest(ctx, recipe, info, None)
    write_manifest(out, manifest)
    return manifest, acc


def calibration_set(ctx: RunContext, samples: int, allow_small: bool, seed: int = 0) -> tuple[np.ndarray, str]:
    """Normalised float32 calibration images from the unlabeled target pool, and their sha256."""
    if samples < MIN_CALIBRATION and not allow_small:
        raise ExportError(
            f"calibration needs ≥ {MIN_CALIBRATION} real target images, asked for {samples}; "
            "pass --allow-small-calibration to accept fewer"
        )
    imgs = ctx.data.calibration(samples, seed).images
    x = ctx.pre(torch.from_numpy(imgs)).numpy().astype(np.float32)
    return x, hashlib.sha256(x.tobytes()).hexdigest()


def export_int8(
    ctx: RunContext, recipe: Recipe, fp32: Path, ref: Accuracy, samples: int | None, allow_small: bool
) -> Manifest:
    """Static INT8 QDQ through ONNX Runtime's quantizer; fails when the accuracy drop exceeds the budget."""
    assert recipe.quantization is not None
    q = recipe.quantization
    n = samples or q.calibration.samples
    calib, digest = calibration_set(ctx, n, allow_small)
    out = ctx.rd.export_dir(recipe.target)
    path = quantize_onnxruntime(fp32, out / "model.onnx", calib, q)
    acc = onnx_accuracy(path, ctx.test_batches())
    cmp = compare_accuracy(ref, acc)
    info = AccuracyInfo(
        split="test", n=acc.n, fp32=ref.top1, quantized=acc.top1, drop_pts=cmp["drop_pts"], agreement=cmp["agreement"]
    )
    calib_info = CalibrationInfo(count=len(calib), sha256=digest, method=q.calibration.method, source="unlabeled pool")
    manifest = _manifest(ctx, recipe, info, calib_info)
    write_manifest(out, manifest)
    limit = ctx.resolved.budget.accuracy.max_int8_drop_pts
    if cmp["drop_pts"] > limit:
        raise ExportError(
            f"{out}: INT8 top-1 {acc.top1:.2f}% is {cmp['drop_pts']:.2f} pts below FP32 {ref.top1:.2f}%, "
            f"more than the budget's accuracy.max_int8_drop_pts {limit}"
        )
    return manifest


Exporter = Callable[[RunContext, Recipe, Path, Accuracy, int | None, bool], Manifest]
EXPORTERS: Registry[Exporter] = Registry("exporter")
EXPORTERS.register("onnxruntime-int8")(export_int8)


def export_run(
    run: Path,
    *,
    budget: Path | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    calibration_samples: int | None = None,
    allow_small_calibration: bool = False,
) -> list[Manifest]:
    """Export the run's chosen subnet for the budget's target (or the runtime/precision asked).

    Always writes the FP32 ONNX reference first; a reduced-precision target follows its recipe.
    """
    ctx = load_context(run, budget)
    b = ctx.resolved
    if runtime is None and precision is None:
        recipe = b.recipe
    else:
        recipe = find_recipe(runtime or b.budget.target.runtime, precision or b.budget.target.precision)
    fp32_manifest, ref = export_fp32(ctx, find_recipe("onnxruntime", "fp32"))
    if recipe.target == FP32_TARGET:
        return [fp32_manifest]
    exporter = EXPORTERS.get(recipe.target)
    fp32_path = ctx.rd.export_dir(FP32_TARGET) / "model.onnx"
    return [fp32_manifest, exporter(ctx, recipe, fp32_path, ref, calibration_samples, allow_small_calibration)]
