"""Exporters (registry): one function per target, each turning the FP32 ONNX reference into its artifact."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedistill.export.accuracy import model_accuracy, onnx_accuracy
from edgedistill.export.job import ExportJob, build_manifest, finish
from edgedistill.export.layer_report import export_sensitivity
from edgedistill.export.manifest import FallbackInfo, Manifest
from edgedistill.export.mixed_precision import latency_cost, ort_mixed_precision
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.export.onnx2tensorrt import EngineSpec, tensorrt_artifact
from edgedistill.export.torch2onnx import INPUT_NAME
from edgedistill.io import atomic_write
from edgedistill.isa import this_machine_isa
from edgedistill.recipe import TensorRTBuild
from edgedistill.registry import Registry

if TYPE_CHECKING:
    from edgedistill.export.onnx2openvino import AccuracyControl


def export_ort_int8(job: ExportJob) -> Manifest:
    """Static INT8 QDQ through ONNX Runtime's quantizer (x86 layout, or TensorRT's for runtime tensorrt).

    The artifact's calibration ranges are cached for the export: the mixed-precision fallback and the sensitivity
    report's single-layer models re-quantize with them instead of calibrating again.
    """
    with tempfile.TemporaryDirectory(prefix="edgedistill-int8-") as tmp:
        return _export_ort_int8(job, Path(tmp))


def _export_ort_int8(job: ExportJob, tmp: Path) -> Manifest:
    trt, sim = job.recipe.runtime == "tensorrt", job.simulate_qdq
    ranges = tmp / "ranges.json"
    calib, calib_info = job.calibration()
    path = quantize_onnxruntime(job.fp32, job.out / "model.onnx", calib, job.quant, for_tensorrt=trt, ranges=ranges)
    batches = job.ctx.test_batches()
    fallback = None
    acc = onnx_accuracy(path, batches, fake_quant=sim)
    if job.fallback == "auto" and job.drop(acc) > job.max_drop:
        # Layers kept in float are chosen on unlabeled images (top-1 disagreement with FP32, an upper bound on the
        # accuracy drop), never on the test split that reports the result.
        val = job.unlabeled()
        fp32_pred = onnx_accuracy(job.fp32, [(val, np.zeros(len(val), dtype=np.int64))]).predictions

        def drop_of(p: Path) -> float:
            return 100.0 - onnx_accuracy(p, [(val, fp32_pred)], fake_quant=sim).top1

        full = Path(shutil.copyfile(path, tmp / "int8.onnx"))
        fallback = ort_mixed_precision(
            job.fp32,
            full,
            path,
            calib,
            job.quant,
            drop_of=drop_of,
            max_drop=job.max_drop,
            sensitivity_images=val,
            for_tensorrt=trt,
            ranges=ranges,
        )
        acc = onnx_accuracy(path, batches, fake_quant=sim)
        probe = build_manifest(job.ctx, job.recipe, job.score(acc, True), calib_info)
        b = job.ctx.resolved.budget
        p50, note = latency_cost(probe, full, path, b.target.threads, b.input.batch)
        fallback = fallback.model_copy(update={"latency_p50_ms": p50, "latency_note": note})
    extra: dict[str, Any] = {
        "fallback": fallback,
        "sensitivity": export_sensitivity(job, path, calib, for_tensorrt=trt, ranges=ranges),
    }
    if trt:
        extra.update(_tensorrt_files(job, "model.onnx"))
        extra["notes"] = {"accuracy_runtime": "ONNX Runtime CPU, Q/DQ simulated in float (as TensorRT computes)"}
    elif sim:
        extra["notes"] = {
            "accuracy_runtime": "ONNX Runtime CPU, Q/DQ simulated in float: 8-bit weights for the device's instruction "
            f"set, which this machine's ({this_machine_isa()}) u8s8 kernels would saturate"
        }
    return finish(job, build_manifest(job.ctx, job.recipe, job.score(acc, True), calib_info, **extra))


def export_openvino(job: ExportJob) -> Manifest:
    """OpenVINO IR: FP32, FP16 weights, NNCF INT8, or NNCF INT8 with accuracy control (`--fallback auto` too)."""
    from edgedistill.export.onnx2openvino import (
        MODEL_BIN,
        convert_openvino,
        float_layers,
        load_openvino,
        quantize_openvino,
    )

    calib_info, fallback, control = None, None, None
    if job.recipe.precision != "int8":
        xml = convert_openvino(job.fp32, job.out, fp16=job.recipe.precision == "fp16")
    else:
        calib, calib_info = job.calibration()
        control = _accuracy_control(job) if job.recipe.accuracy_control else None
        xml = quantize_openvino(job.fp32, job.out, calib, job.quant, job.recipe.name, control)
    batches = job.ctx.test_batches()
    acc = model_accuracy(load_openvino(xml), batches, str(xml))
    drop = job.drop(acc)
    if job.fallback == "auto" and job.recipe.precision == "int8" and drop > job.max_drop and control is None:
        xml = quantize_openvino(job.fp32, job.out, calib, job.quant, job.recipe.name, _accuracy_control(job))
        after = model_accuracy(load_openvino(xml), batches, str(xml))
        layers, total = float_layers(xml)
        after_drop = job.drop(after)
        fallback = FallbackInfo(
            method="nncf.quantize_with_accuracy_control (label-free: top-1 agreement with FP32; at most "
            f"{job.recipe.accuracy_control_limits.max_reverted} quantizer groups reverted)",
            layers_in_fp=layers,
            quantizable_layers=total,
            drop_before_pts=drop,
            drop_after_pts=after_drop,
            fixed=after_drop <= job.max_drop,
            latency_note="not timed: the bench runner has no OpenVINO runtime yet",
        )
        acc = after
    notes = {"accuracy_runtime": "OpenVINO CPU, INFERENCE_PRECISION_HINT f32"}
    sensitivity = export_sensitivity(job, None, calib) if job.recipe.precision == "int8" else None
    m = build_manifest(
        job.ctx,
        job.recipe,
        job.score(acc, job.recipe.precision == "int8"),
        calib_info,
        model_file="model.xml",
        files={MODEL_BIN: ""},
        fallback=fallback,
        notes=notes,
        sensitivity=sensitivity,
    )
    return finish(job, m)


def _accuracy_control(job: ExportJob) -> AccuracyControl:
    """NNCF accuracy control on label-free images, within the budget's drop and the recipe's limits."""
    from edgedistill.export.onnx2openvino import AccuracyControl

    return AccuracyControl(job.unlabeled(), job.max_drop, job.recipe.accuracy_control_limits)


def export_tensorrt_float(job: ExportJob) -> Manifest:
    """TensorRT FP16/FP32: the FP32 ONNX model plus the build script (the engine picks FP16 kernels)."""
    atomic_write(job.out / "model.onnx", lambda p: shutil.copyfile(job.fp32, p))
    acc = onnx_accuracy(job.out / "model.onnx", job.ctx.test_batches())
    notes = {"accuracy_runtime": "ONNX Runtime CPU, FP32; FP16 accuracy is checked on the device"}
    m = build_manifest(
        job.ctx, job.recipe, job.score(acc, False), None, notes=notes, **_tensorrt_files(job, "model.onnx")
    )
    return finish(job, m)


def _tensorrt_files(job: ExportJob, model_file: str) -> dict[str, Any]:
    """Build script + README (+ engine when TensorRT is importable) as manifest fields."""
    shape = [-1 if job.recipe.dynamic_batch else 1, *job.ctx.resolved.budget.input.shape[1:]]
    build = job.recipe.tensorrt or TensorRTBuild()
    spec = EngineSpec(
        job.out, model_file, job.recipe.precision, build, INPUT_NAME, shape, job.ctx.resolved.budget.input.batch
    )
    engine, files = tensorrt_artifact(spec)
    return {"engine": engine, "files": dict.fromkeys(files, "")}


Exporter = Callable[[ExportJob], Manifest]
EXPORTERS: Registry[Exporter] = Registry("exporter")
for _name, _fn in {
    "onnxruntime-int8": export_ort_int8,
    "tensorrt-int8": export_ort_int8,
    "tensorrt-fp16": export_tensorrt_float,
    "tensorrt-fp32": export_tensorrt_float,
    "openvino-fp32": export_openvino,
    "openvino-fp16": export_openvino,
    "openvino-int8": export_openvino,
    "openvino-int8-ac": export_openvino,
}.items():
    EXPORTERS.register(_name)(_fn)
