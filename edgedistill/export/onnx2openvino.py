"""ONNX FP32 → OpenVINO IR (FP32 / FP16 weights), and NNCF static INT8 (plain or accuracy-controlled)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.errors import ConfigError, ExportError
from edgedistill.isa import reduce_range
from edgedistill.recipe import AccuracyControlLimits, Quantization
from edgedistill.runtimes import not_installed

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
# The CPU plugin's default inference precision is bf16 on CPUs with AMX/AVX512-BF16: accuracy is measured in f32.
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@dataclass
class AccuracyControl:
    """Inputs of `nncf.quantize_with_accuracy_control`.

    Attributes:
        images: Label-free validation images (NCHW float32, normalised); the metric is top-1 agreement with FP32.
        max_drop_pts: Largest allowed drop of that agreement, in percentage points.
        limits: Most groups reverted to float, and the images they are ranked on.
    """

    images: np.ndarray
    max_drop_pts: float
    limits: AccuracyControlLimits = field(default_factory=AccuracyControlLimits)


def _openvino() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise not_installed("openvino") from None
    return ov


def _nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise not_installed("openvino") from None
    return nncf


def _save_ir(model: Any, out_dir: Path, compress_to_fp16: bool) -> Path:
    """Save xml+bin to a temp folder beside the destination, fsync, then rename (.bin first, .xml last)."""
    ov = _openvino()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ir-", dir=out_dir))
    try:
        ov.save_model(model, str(tmp / MODEL_XML), compress_to_fp16=compress_to_fp16)
        for name in (MODEL_BIN, MODEL_XML):
            with open(tmp / name, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / MODEL_XML


def convert_openvino(onnx_path: Path, out_dir: Path, fp16: bool) -> Path:
    """Convert an ONNX model to IR (`model.xml` + `model.bin`), FP16-compressed weights when `fp16`.

    Raises:
        BackendUnavailable: openvino is not installed.
        ExportError: Conversion failed.
    """
    ov = _openvino()
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:  # OpenVINO raises its own RuntimeError subclasses and plain Exceptions
        raise ExportError(f"{onnx_path}: OpenVINO conversion failed ({str(e).strip().splitlines()[0]})") from e
    return _save_ir(model, Path(out_dir), compress_to_fp16=fp16)


def _range_estimator(nncf: Any, quant: Quantization, recipe: str) -> Any:
    """The recipe's calibration method as NNCF activation range-estimator parameters."""
    from nncf.quantization.range_estimator import (
        AggregatorType,
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
        StatisticsType,
    )

    cal = quant.calibration
    if cal.method == "minmax":
        return RangeEstimatorParametersSet.MINMAX
    if cal.method == "percentile":
        stat = StatisticsCollectorParameters(
            statistics_type=StatisticsType.QUANTILE,
            aggregator_type=AggregatorType.MEAN,
            quantile_outlier_prob=1.0 - cal.percentile / 100.0,
        )
        return RangeEstimatorParameters(min=stat, max=stat)
    raise ConfigError(
        f"recipe {recipe}: quantization.calibration.method: {cal.method} is not available for openvino "
        "(NNCF has minmax, percentile)"
    )


def _quantize_args(nncf: Any, quant: Quantization, recipe: str) -> dict[str, Any]:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    if not quant.per_channel:
        raise ConfigError(f"recipe {recipe}: quantization.per_channel: NNCF quantizes CPU weights per channel only")
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=_range_estimator(nncf, quant, recipe),
        disable_bias_correction=not quant.bias_correction,
    )
    if reduce_range(quant):
        advanced.overflow_fix = OverflowFix.ENABLE  # 7-bit weights everywhere, as ORT's reduce_range
    preset = nncf.QuantizationPreset.PERFORMANCE if quant.symmetric_activations else nncf.QuantizationPreset.MIXED
    return {"preset": preset, "advanced_parameters": advanced}


def quantize_openvino(
    onnx_path: Path,
    out_dir: Path,
    calibration: np.ndarray,
    quant: Quantization,
    recipe: str,
    control: AccuracyControl | None = None,
) -> Path:
    """NNCF post-training INT8 of the ONNX model's IR, calibrated on `calibration` (one image per sample).

    With `control`, `nncf.quantize_with_accuracy_control` reverts the quantizers that cost most until the
    agreement drop fits `control.max_drop_pts`.

    Raises:
        BackendUnavailable: openvino or nncf is not installed.
        ConfigError: The recipe asks for something NNCF does not have (one line naming the field).
    """
    ov, nncf = _openvino(), _nncf()
    model = ov.convert_model(str(onnx_path))
    args = _quantize_args(nncf, quant, recipe)
    items = [calibration[i : i + 1] for i in range(len(calibration))]
    dataset = nncf.Dataset(items)
    if control is None:
        qmodel = nncf.quantize(model, dataset, subset_size=len(items), **args)
    else:
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        ref = predictor(ov.Core().compile_model(model, "CPU", F32))(control.images).argmax(axis=1)
        val = nncf.Dataset([(control.images[i : i + 1], ref[i]) for i in range(len(ref))], lambda item: item[0])
        qmodel = nncf.quantize_with_accuracy_control(
            model,
            dataset,
            val,
            _agreement,
            max_drop=control.max_drop_pts,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(items),
            preset=args["preset"],
            advanced_quantization_parameters=args["advanced_parameters"],
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=control.limits.max_reverted,
                ranking_subset_size=min(control.limits.ranking_images, len(control.images)),
            ),
        )
    return _save_ir(qmodel, Path(out_dir), compress_to_fp16=False)


def _agreement(compiled: Any, data: Any) -> tuple[float, list[float]]:
    """NNCF validation function: percent of images whose top-1 equals the FP32 model's, and per-image 0/100."""
    hits = [100.0 * float(np.argmax(compiled(x)[0]) == ref) for x, ref in data]
    return float(np.mean(hits)), hits


def predictor(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    """`x → logits` for a compiled OpenVINO model."""
    return lambda x: np.asarray(compiled(np.ascontiguousarray(x, dtype=np.float32))[0])


def load_openvino(xml: Path, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """Compile an IR on the CPU with f32 inference precision and return its predict function.

    Raises:
        BackendUnavailable: openvino is not installed.
    """
    ov = _openvino()
    core = ov.Core()
    compiled = core.compile_model(str(xml), "CPU", {**F32, "INFERENCE_NUM_THREADS": threads})
    return predictor(compiled)


def float_layers(xml: Path) -> tuple[list[str], int]:
    """Weighted layers of an IR whose data input is not fake-quantized (kept in float), and the weighted count."""
    model = _openvino().Core().read_model(str(xml))
    weighted = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "MatMul")]
    fp = [op.get_friendly_name() for op in weighted if op.input_value(0).get_node().get_type_name() != "FakeQuantize"]
    return fp, len(weighted)
