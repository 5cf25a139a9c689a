"""Shared pieces of every export: the loaded run, the manifest, the calibration set, the job and the accuracy check."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from edgedistill.budget import ResolvedBudget
from edgedistill.data import Preprocess, TaskData
from edgedistill.errors import ExportError
from edgedistill.export.accuracy import Accuracy, compare_accuracy
from edgedistill.export.manifest import (
    AccuracyInfo,
    CalibrationInfo,
    ClassAccuracy,
    Cost,
    InputInfo,
    IsaInfo,
    Manifest,
    Source,
    write_manifest,
)
from edgedistill.export.manifest import Preprocess as PreprocessInfo
from edgedistill.export.versions import runtime_versions
from edgedistill.inputs import pool_images
from edgedistill.io import sha256_file
from edgedistill.isa import budget_isa, for_isa, reduce_range, seven_bit_weights, this_machine_isa
from edgedistill.models import SlimmableBank, count_cost
from edgedistill.options import opt, param
from edgedistill.recipe import Quantization, Recipe, Sensitivity
from edgedistill.run import RunDir

MIN_CALIBRATION = 300
Fallback = Literal["none", "auto", "qat"]


@dataclass
class RunContext:
    """Loaded run: the budget in force, the task data and the subnet chosen for that budget."""

    rd: RunDir
    resolved: ResolvedBudget
    data: TaskData
    pre: Preprocess
    subnet: SlimmableBank
    subnet_path: Path
    config: list[float]
    channels: list[int]
    gray_stem: str | None = None  # the stem conv folded over its input channels for gray inputs (`gray_input`)

    def test_batches(self, batch: int = 1000) -> list[tuple[np.ndarray, np.ndarray]]:
        """Normalised float32 test images with labels."""
        assert self.data.test.labels is not None
        x, y = self.data.test.images, self.data.test.labels
        return [
            (self.pre(torch.from_numpy(x[i : i + batch])).numpy(), y[i : i + batch]) for i in range(0, len(x), batch)
        ]


def build_manifest(
    ctx: RunContext,
    recipe: Recipe,
    acc: AccuracyInfo,
    calib: CalibrationInfo | None,
    model_file: str = "model.onnx",
    **extra: Any,
) -> Manifest:
    cost = count_cost(ctx.subnet, ctx.resolved.budget.input.shape)
    if ctx.gray_stem is not None:
        note = f"gray images replicated to {ctx.pre.channels} channels: {ctx.gray_stem} averaged over its inputs"
        extra["notes"] = {**extra.get("notes", {}), "gray_stem": note}
    return Manifest(
        name=recipe.target,
        runtime=recipe.runtime,
        precision=recipe.precision,
        model_file=model_file,
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
        isa=isa_info(ctx.resolved, recipe),
        budget=ctx.resolved.budget.name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    )


def isa_info(resolved: ResolvedBudget, recipe: Recipe) -> IsaInfo | None:
    """What an INT8 artifact's weights were quantized for: the instruction set and the 7-bit choice."""
    if recipe.precision != "int8" or recipe.quantization is None:
        return None
    choice = budget_isa(resolved.budget.device)
    quant = for_isa(recipe.quantization, choice.isa)
    return IsaInfo(isa=choice.isa, source=choice.source, reduce_range=bool(quant.reduce_range))


def calibration_set(ctx: RunContext, samples: int, allow_small: bool, seed: int = 0) -> tuple[np.ndarray, str]:
    """Normalised float32 calibration images from the unlabeled target pool, and their sha256."""
    check_calibration(ctx, samples, allow_small)
    x = pool_images(ctx.data, ctx.pre, samples, seed).numpy().astype(np.float32)
    return x, hashlib.sha256(x.tobytes()).hexdigest()


def check_calibration(ctx: RunContext, samples: int, allow_small: bool) -> None:
    """Refuse a calibration count the run cannot serve (before anything is exported)."""
    if samples < MIN_CALIBRATION and not allow_small:
        raise ExportError(
            f"calibration needs ≥ {MIN_CALIBRATION} real target images, asked for {samples}; "
            f"pass {opt('allow_small_calibration')} to accept fewer"
        )
    pool = len(ctx.data.target_unlabeled)
    if samples > pool:
        raise ExportError(
            f"calibration: asked for {samples} images, the run's unlabeled pool has {pool}; add unlabeled images to "
            f"the task, or pass {opt('calibration_samples', pool)}"
            + ("" if pool >= MIN_CALIBRATION else f" {opt('allow_small_calibration')}")
        )


@dataclass
class ExportJob:
    """One reduced-precision export: the run, its recipe, the FP32 ONNX reference and the user's options."""

    ctx: RunContext
    recipe: Recipe
    fp32: Path
    ref: Accuracy
    samples: int | None = None
    allow_small: bool = False
    fallback: Fallback = "none"
    sensitivity_images: int | None = None  # None: the recipe's quantization.sensitivity
    sensitivity_top_k: int | None = None
    guard: bool = True  # False: `finish` records the drop without raising (QAD measures PTQ's drop first)

    @property
    def out(self) -> Path:
        return self.ctx.rd.export_dir(self.recipe.target)

    @property
    def quant(self) -> Quantization:
        """The recipe's quantization, `reduce_range: auto` made concrete for the budget's instruction set."""
        assert self.recipe.quantization is not None
        return for_isa(self.recipe.quantization, budget_isa(self.ctx.resolved.budget.device).isa)

    @property
    def simulate_qdq(self) -> bool:
        """Score the INT8 ONNX model with Q/DQ run as float ops: TensorRT's arithmetic, or the device's when its
        weights keep 8 bits (VNNI, ARM dot product) and this machine's u8s8 kernels would saturate them (AVX2)."""
        if self.recipe.runtime == "tensorrt":
            return True
        return (
            self.recipe.runtime == "onnxruntime"
            and not reduce_range(self.quant)
            and seven_bit_weights(this_machine_isa())
        )

    @property
    def max_drop(self) -> float:
        return self.ctx.resolved.budget.accuracy.max_int8_drop_pts

    @property
    def sensitivity(self) -> Sensitivity:
        """The recipe's sensitivity-report settings with the caller's overrides."""
        base = self.quant.sensitivity
        return Sensitivity(
            images=base.images if self.sensitivity_images is None else self.sensitivity_images,
            top_k=base.top_k if self.sensitivity_top_k is None else self.sensitivity_top_k,
        )

    def calibration(self) -> tuple[np.ndarray, CalibrationInfo]:
        """The calibration set the recipe asks for (≥ 300 unless allowed), with its provenance."""
        calib, digest = calibration_set(self.ctx, self.samples or self.quant.calibration.samples, self.allow_small)
        info = CalibrationInfo(
            count=len(calib), sha256=digest, method=self.quant.calibration.method, source="unlabeled pool"
        )
        return calib, info

    def unlabeled(self, n: int = 500) -> np.ndarray:
        """Label-free validation images from the unlabeled pool (another draw than the calibration set)."""
        n = min(n, len(self.ctx.data.target_unlabeled))
        return pool_images(self.ctx.data, self.ctx.pre, n, seed=1).numpy().astype(np.float32)

    @property
    def metric(self) -> str:
        """What the accuracy guard compares: the budget's accuracy.metric (top1 | balanced)."""
        return self.ctx.resolved.budget.accuracy.metric

    def drop(self, acc: Accuracy) -> float:
        """FP32 minus `acc` in points of the guarded metric."""
        return compare_accuracy(self.ref, acc, self.metric)["drop_pts"]

    def score(self, acc: Accuracy, quantized: bool) -> AccuracyInfo:
        """FP32 reference vs this artifact on the test split."""
        cmp = compare_accuracy(self.ref, acc, self.metric)
        return reference_info(self.ref, self.ctx.data.class_names, acc).model_copy(
            update={
                "quantized": acc.top1 if quantized else None,
                "artifact": acc.top1,
                "metric": self.metric,
                "drop_pts": cmp["drop_pts"],
                "agreement": cmp["agreement"],
                "balanced": acc.balanced,
            }
        )


def reference_info(ref: Accuracy, class_names: list[str], artifact: Accuracy | None = None) -> AccuracyInfo:
    """Top-1, balanced and per-class accuracy of the FP32 reference on the test split (and of `artifact`)."""
    mine = artifact.per_class() if artifact is not None else {}
    rows = [
        ClassAccuracy(name=class_names[c], n=n, fp32=fp32, artifact=mine[c][1] if c in mine else None)
        for c, (n, fp32) in ref.per_class().items()
    ]
    return AccuracyInfo(split="test", n=ref.n, fp32=ref.top1, fp32_balanced=ref.balanced, per_class=rows)


class AccuracyDropError(ExportError):
    """A reduced-precision artifact drops more test top-1 than the budget allows (its manifest is written)."""


def finish(job: ExportJob, manifest: Manifest) -> Manifest:
    """Write the manifest, then fail when a reduced-precision artifact drops more than the budget allows."""
    write_manifest(job.out, manifest)
    a = manifest.accuracy
    if job.guard and manifest.precision != "fp32" and a.drop_pts is not None and a.drop_pts > job.max_drop:
        what, mine, fp32 = (
            ("top-1", a.artifact, a.fp32) if a.metric == "top1" else ("balanced accuracy", a.balanced, a.fp32_balanced)
        )
        raise AccuracyDropError(
            f"{job.out}: {manifest.precision.upper()} {what} {mine:.2f}% is {a.drop_pts:.2f} pts below FP32 "
            f"{fp32:.2f}%, more than the budget's accuracy.max_int8_drop_pts {job.max_drop}{guard_hint(manifest)}"
        )
    return manifest


# What each `--fallback` value does, in the order to try them (a value the option does not take is not offered).
FALLBACK_STEPS = {
    "auto": "bias correction, AdaRound, then the most sensitive layers in float",
    "qat": "quantization-aware distillation (QAD)",
}


def next_steps(manifest: Manifest) -> list[str]:
    """The `--fallback` values still to try after this artifact missed the accuracy budget, worded for the caller."""
    offered = [f for f in FALLBACK_STEPS if f in get_args(Fallback)]
    if manifest.fallback is not None:  # `auto` made this artifact: what is left comes after it
        offered = offered[offered.index("auto") + 1 :] if "auto" in offered else []
    return [f"{opt('fallback', f)} ({FALLBACK_STEPS[f]})" for f in offered]


def guard_hint(manifest: Manifest) -> str:
    """The accuracy guard's advice: the three most sensitive layers (when measured) and the next step."""
    hint = ""
    if manifest.qad is not None:
        hint += f" (after QAD; {manifest.qad.drop_before_pts:.2f} pts before it)"
    if manifest.sensitivity is not None and manifest.sensitivity.layers:
        hint += f"; most sensitive layers: {manifest.sensitivity.worst_text(3)}"
    if manifest.qad is not None:
        return hint + f"; try more {param('qad_steps')}, or relax accuracy.max_int8_drop_pts"
    steps = next_steps(manifest)
    if steps:
        hint += "; try " + ", then ".join(steps)
    return hint
