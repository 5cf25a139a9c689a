"""The `export` stage: chosen subnet → FP32 ONNX → the target artifact, each with a verified manifest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edgedistill.budget import AUTO, auto_candidates, is_auto
from edgedistill.errors import ConfigError
from edgedistill.export.accuracy import Accuracy, onnx_accuracy
from edgedistill.export.exporters import EXPORTERS
from edgedistill.export.gray_input import fold_gray_stem, gray_input
from edgedistill.export.job import (
    MIN_CALIBRATION,
    AccuracyDropError,
    ExportJob,
    Fallback,
    RunContext,
    build_manifest,
    check_calibration,
    reference_info,
)
from edgedistill.export.manifest import Manifest, read_manifest, write_manifest
from edgedistill.export.qad_export import export_with_qad
from edgedistill.export.torch2onnx import onnx_parity, torch_to_onnx
from edgedistill.options import is_cli, opt, param
from edgedistill.outputs import check_output_dir, inside
from edgedistill.pipeline.context import load_context
from edgedistill.recipe import QADSettings, Recipe, resolve_recipe
from edgedistill.registry import unknown_name
from edgedistill.run import FP32_TARGET, RunDir, StagedRunDir, find_recipe, run_budget
from edgedistill.rundir_guard import writes_run
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
    # 1e-3 per unit of the largest |logit|: a Lite0 subnet (16 blocks) differs from torch by ~2e-4 in float32 through
    # ORT's fused kernels, ~2e-3 with BN recalibrated on upsampled digits (docs/results.md, INT8 of pretrained
    # subnets); a wrong graph differs by far more.
    onnx_parity(ctx.subnet, path, batches[0][0][:16], atol=1e-3)
    acc = onnx_accuracy(path, batches)
    info = reference_info(acc, ctx.data.class_names)
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
        try:
            return resolve_recipe(str(recipe))
        except ConfigError as e:
            raise ConfigError(f"{param('recipe')}: {e}") from None
    if runtime is None and precision is None:
        return ctx.resolved.recipe
    rt = runtime or ctx.resolved.budget.target.runtime
    prec = precision or ctx.resolved.budget.target.precision
    if rt not in RUNTIME_SPECS:
        raise ConfigError(f"{param('target')}: {unknown_name('runtime', rt, RUNTIME_SPECS)}")
    if prec == AUTO:  # `--target` alone on an auto budget: bench would look for the budget's runtime, not this one
        raise ConfigError(f"{opt('target', rt)}: the budget's precision is auto; also give a precision (--int8 ...)")
    try:
        check_runtime_precision(rt, prec)
    except ValueError as e:
        raise ConfigError(f"{opt('target', rt)} {opt('precision', prec)}: {e}") from None
    if not RUNTIME_SPECS[rt].exporter:
        raise ConfigError(
            f"{opt('target', rt)}: {rt} is the training runtime; it has no export artifact (bench times it)"
        )
    return find_recipe(rt, prec)


@writes_run("export")
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
    sensitivity_images: int | None = None,
    sensitivity_top_k: int | None = None,
    qad_steps: int | None = None,
    qad_lr: float | None = None,
) -> list[Manifest]:
    """Export the run's chosen subnet for the budget's target (or the runtime/precision or recipe asked).

    Always writes the FP32 ONNX reference first; the target follows its recipe through the `EXPORTERS` registry.
    `fallback="auto"` lets an INT8 export that misses the accuracy budget climb the post-training ladder (bias
    correction, AdaRound), then keep its most sensitive layers in float, then fine-tune with quantization-aware
    distillation when that still misses (or fits only with most layers in float); `fallback="qat"` always fine-tunes
    (`qad_steps`, `qad_lr` override the recipe's `qad:` settings).
    `sensitivity_images` / `sensitivity_top_k` override the recipe's `quantization.sensitivity` (images 0: no report).
    """
    ctx = load_context(run, budget)
    if gray_input(ctx.data, ctx.pre):  # exact on these inputs; INT8 then rounds the filters' sums (gray_input.py)
        ctx.gray_stem = fold_gray_stem(ctx.subnet)
    if is_auto(ctx.resolved.budget) and runtime is None and precision is None and recipe is None:
        int8 = _AutoInt8(fallback, qad_steps, qad_lr, sensitivity_images, sensitivity_top_k)
        return _export_auto(ctx, calibration_samples, allow_small_calibration, int8)
    chosen = _with_qad(_resolve_recipe(ctx, runtime, precision, recipe), fallback, qad_steps, qad_lr)
    for name, value in (("sensitivity_images", sensitivity_images), ("sensitivity_top_k", sensitivity_top_k)):
        if value is not None and chosen.precision != "int8":
            raise ConfigError(f"{param(name)}: the sensitivity report needs an int8 target, not {chosen.target}")
    exporter = EXPORTERS.get(chosen.target) if chosen.target != FP32_TARGET else None
    _check_targets(ctx, [chosen], calibration_samples, allow_small_calibration)
    with built_aside(ctx):
        fp32_manifest, ref = export_fp32(ctx, find_recipe("onnxruntime", "fp32"))
        if exporter is None:
            return [fp32_manifest]
        fp32_path = ctx.rd.export_dir(FP32_TARGET) / "model.onnx"
        job = ExportJob(ctx, chosen, fp32_path, ref, calibration_samples, allow_small_calibration, fallback)
        job.sensitivity_images, job.sensitivity_top_k = sensitivity_images, sensitivity_top_k
        return [fp32_manifest, export_with_qad(job, exporter) if fallback in ("auto", "qat") else exporter(job)]


@contextmanager
def built_aside(ctx: RunContext) -> Iterator[None]:
    """Artifact folders written in this block are built beside their place and swapped in at its end (`StagedRunDir`).

    A guard failure (`AccuracyDropError`) still swaps its complete artifact in, so its manifest says what it measured;
    any other failure or Ctrl-C leaves every previous artifact as it was.
    """
    plain, staging = ctx.rd, StagedRunDir(ctx.rd.root)
    ctx.rd = staging
    try:
        yield
    except AccuracyDropError:
        staging.commit()
        raise
    except BaseException:
        staging.discard()
        raise
    else:
        staging.commit()
    finally:
        ctx.rd = plain


def _check_targets(ctx: RunContext, recipes: list[Recipe], samples: int | None, allow_small: bool) -> None:
    """Before the FP32 reference is written: artifact folders inside the run, a calibration set the run can serve."""
    for target in {FP32_TARGET, *(r.target for r in recipes)}:  # the run's own folders: never a link out of it
        d = ctx.rd.export_dir(target)  # the final folder: `built_aside` has not started yet
        check_output_dir(d, param("run"))
        inside(ctx.rd.root, d, "an artifact folder")
    for r in recipes:
        if r.quantization is not None and r.precision == "int8":
            check_calibration(ctx, samples or r.quantization.calibration.samples, allow_small)


def _with_qad(chosen: Recipe, fallback: Fallback, steps: int | None, lr: float | None) -> Recipe:
    """The recipe with the QAD overrides; fallbacks and QAD options on a float target fail in one line."""
    if fallback in ("auto", "qat") and chosen.precision != "int8":
        raise ConfigError(f"{opt('fallback', fallback)} needs an int8 target, not {chosen.target}")
    overrides = {k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None}
    if overrides and fallback not in ("auto", "qat"):
        names = " and ".join(param(f"qad_{k}") for k in overrides)
        raise ConfigError(f"{names}: only used by {opt('fallback', 'qat')} or {opt('fallback', 'auto')}")
    if not overrides:
        return chosen
    try:
        settings = QADSettings.model_validate((chosen.qad or QADSettings()).model_dump() | overrides)
    except ValidationError as e:
        err = e.errors()[0]
        what = err["msg"].replace("Input should be", "must be")
        raise ConfigError(f"{param('qad_' + str(err['loc'][0]))}: {what}, got {err['input']}") from None
    return chosen.model_copy(update={"qad": settings})


@dataclass(frozen=True)
class _AutoInt8:
    """The options of a `precision: auto` export that only its INT8 candidate takes."""

    fallback: Fallback
    qad_steps: int | None
    qad_lr: float | None
    sensitivity_images: int | None
    sensitivity_top_k: int | None


def _export_auto(
    ctx: RunContext, calibration_samples: int | None, allow_small: bool, int8: _AutoInt8
) -> list[Manifest]:
    """`precision: auto`: the FP32 reference, then every other candidate precision of the budget's runtime.

    The INT8 candidate takes the fallback, QAD and sensitivity options. A candidate over the accuracy budget keeps its
    manifest (with its drop) and does not stop the others: `bench` leaves it out of the decision, and the report says
    why.
    """
    recipes = [
        _with_qad(r, int8.fallback, int8.qad_steps, int8.qad_lr) if r.precision == "int8" else r
        for r in auto_candidates(ctx.resolved).recipes
    ]
    _check_targets(ctx, recipes, calibration_samples, allow_small)
    with built_aside(ctx):
        fp32_manifest, ref = export_fp32(ctx, find_recipe("onnxruntime", "fp32"))
        manifests = [fp32_manifest]
        fp32_path = ctx.rd.export_dir(FP32_TARGET) / "model.onnx"
        for chosen in recipes:
            if chosen.target == FP32_TARGET:
                continue
            if chosen.precision == "int8":
                job = ExportJob(
                    ctx, chosen, fp32_path, ref, calibration_samples, allow_small, int8.fallback,
                    sensitivity_images=int8.sensitivity_images, sensitivity_top_k=int8.sensitivity_top_k,
                )  # fmt: skip
            else:
                job = ExportJob(ctx, chosen, fp32_path, ref, calibration_samples, allow_small)
            exporter = EXPORTERS.get(chosen.target)
            try:
                manifests.append(export_with_qad(job, exporter) if job.fallback in ("auto", "qat") else exporter(job))
            except AccuracyDropError:
                manifests.append(read_manifest(job.out))
    return manifests


def auto_notes(run: Path, manifests: list[Manifest], budget: Path | None = None) -> list[str]:
    """What `precision: auto` made of an export: skipped precisions and candidates over the accuracy budget."""
    resolved = run_budget(RunDir(Path(run)), budget)
    if not is_auto(resolved.budget):
        return []
    max_drop = resolved.budget.accuracy.max_int8_drop_pts
    notes = [f"{p}: {why}" for p, why in auto_candidates(resolved).skipped.items()]
    for m in manifests:
        drop = m.accuracy.drop_pts
        if m.precision != "fp32" and drop is not None and drop > max_drop:
            notes.append(f"{m.name}: drops {drop:.2f} pts, over accuracy.max_int8_drop_pts {max_drop:g} → not kept")
    names = ", ".join(m.name for m in manifests)
    return [*notes, f"precision auto: exported {names}; `edgedistill bench` deploys the fastest kept one"]
