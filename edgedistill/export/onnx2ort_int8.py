"""ONNX FP32 → ONNX Runtime static INT8 (QDQ) with a calibration set."""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.errors import ExportError
from edgedistill.export.shape_subgraph import shape_nodes
from edgedistill.io import atomic_write
from edgedistill.isa import reduce_range
from edgedistill.recipe import Quantization
from edgedistill.runtimes import not_installed

# TensorRT's Q/DQ placement rules: Q/DQ on every input of weighted ops (Conv, Gemm, MatMul) and not on their
# outputs; one dedicated pair per consumer (TensorRT cannot share a pair); Q/DQ pairs on float weights (accepted by
# every TensorRT version with explicit quantization); float biases (TensorRT has no int32 dequantize).
TENSORRT_OPS = ("Conv", "Gemm", "MatMul")
TENSORRT_OPTIONS: dict[str, Any] = {
    "WeightSymmetric": True,
    "OpTypesToExcludeOutputQuantization": list(TENSORRT_OPS),
    "DedicatedQDQPair": True,
    "AddQDQPairToWeight": True,
    "QuantizeBias": False,
    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
}


def preprocess_onnx(fp32_path: Path, out_path: Path) -> Path:
    """ORT's `quant_pre_process` (shape inference, folding); node names of its output are what quantization sees.

    Raises:
        BackendUnavailable: onnxruntime is not installed.
    """
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise not_installed("onnxruntime") from None
    quant_pre_process(str(fp32_path), str(out_path))
    return Path(out_path)


def _calibration_reader(base: type, calibration: np.ndarray, input_name: str, batch: int) -> Any:
    """A `CalibrationDataReader` that yields `calibration` in batches (built lazily: ORT is optional)."""

    size = _even_batch(len(calibration), batch)
    starts = list(range(0, len(calibration), size))

    class ArrayReader(base):  # type: ignore[misc, valid-type]
        """Batches of `size` images; `set_range` narrows it to some batches (ONNX Runtime's strided calibration)."""

        def __init__(self) -> None:
            self._batches: Iterator[dict[str, np.ndarray]] = iter(())
            self.set_range(0, len(starts))

        def __len__(self) -> int:
            return len(starts)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._batches = ({input_name: calibration[i : i + size]} for i in starts[start_index:end_index])

        def rewind(self) -> None:
            self.set_range(0, len(starts))

    return ArrayReader()


CALIBRATION_PIXELS = 32 * 64 * 64  # input pixels per calibration batch: 32 images up to 64 px, 2 at 224 px


def calibration_batch(calibration: np.ndarray, batch: int) -> int:
    """Images per calibration batch: at most `batch`, and at most `CALIBRATION_PIXELS` input pixels.

    ONNX Runtime's calibrators keep every intermediate tensor of what one `collect_data` call reads until it ends
    (300 Lite0 images at 224 px: over 24 GB with a histogram method). The quantizer hands them one batch per call
    (`CalibStridedMinMax`, which ONNX Runtime applies to every calibrator), so a batch bounds that memory.
    """
    return max(1, min(batch, CALIBRATION_PIXELS // max(1, calibration.shape[2] * calibration.shape[3])))


def _even_batch(n: int, batch: int) -> int:
    """Largest batch size ≤ `batch` that divides `n`: ORT's histogram calibrators fail on a ragged last batch."""
    return next(b for b in range(min(batch, n), 0, -1) if n % b == 0)


def _cache_argument(quantize_static: Callable[..., Any], ranges: Path | None) -> dict[str, Any]:
    """`calibration_cache_path` for `quantize_static` when given and this ONNX Runtime has it (1.32 does)."""
    if ranges is None or "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return {}
    return {"calibration_cache_path": str(ranges)}


def _check_calibration(calibration: np.ndarray) -> np.ndarray:
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ExportError(f"calibration must be a non-empty NCHW array, got shape {calibration.shape}")
    if not np.all(np.isfinite(calibration)):
        raise ExportError("calibration array contains NaN or inf")
    return np.ascontiguousarray(calibration, dtype=np.float32)


def quantize_onnxruntime(
    fp32_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    quant: Quantization,
    batch: int = 32,
    *,
    nodes_to_exclude: Sequence[str] = (),
    for_tensorrt: bool = False,
    nodes_to_quantize: Sequence[str] | None = None,
    ranges: Path | None = None,
) -> Path:
    """Statically quantize an FP32 ONNX model to QDQ INT8 for ONNX Runtime.

    Runs `quant_pre_process` (shape inference, folding) and `quantize_static` with int8 weights
    (per channel when the recipe says so) and uint8 or int8 activations. uint8 activations with
    int8 weights are the fast path of ORT's x86 kernels (s8s8 measured 2.5x slower); symmetric
    int8 activations (zero point 0) are what TensorRT needs.

    Args:
        fp32_path: Input model (single input NCHW float32).
        out_path: Destination; written atomically.
        calibration: Float32 NCHW calibration inputs, already normalised like the model's inputs.
        quant: Recipe quantization settings (activation type, per-channel, symmetric, calibration method).
        batch: Calibration batch size (the model must accept it; exported models have a dynamic batch).
        nodes_to_exclude: Node names (of the pre-processed model, see `preprocess_onnx`) kept in float.
        for_tensorrt: TensorRT explicit-quantization layout (see `TENSORRT_OPTIONS`).
        nodes_to_quantize: Only these nodes (pre-processed names) are quantized, with the scales the full
            calibration gives them; None quantizes every node (less `nodes_to_exclude`).
        ranges: A calibration cache (ONNX Runtime's JSON of tensor ranges): read when it exists, written after
            calibrating when it does not. Ranges do not depend on which nodes are quantized, so the single-layer and
            mixed models of one export reuse the artifact's; the caller keeps one cache to one calibration set,
            recipe and layout (`for_tensorrt`). Ignored by ONNX Runtime versions without calibration caches.

    Returns:
        `out_path`.

    Raises:
        BackendUnavailable: onnxruntime is not installed.
        ExportError: Bad calibration array or a failing quantization step.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise not_installed("onnxruntime") from None
    import onnx

    calibration = _check_calibration(calibration)
    fp32_path = Path(fp32_path)
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    cal = quant.calibration
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[cal.method]
    # One calibration batch per collect call (the option's name says MinMax; ONNX Runtime strides every calibrator).
    extra: dict[str, Any] = {
        "ActivationSymmetric": quant.symmetric_activations,
        "WeightSymmetric": True,
        "CalibStridedMinMax": 1,
    }
    if cal.method == "percentile":
        extra["CalibPercentile"] = cal.percentile
    if for_tensorrt:
        extra.update(TENSORRT_OPTIONS)
    activation_type = QuantType.QUInt8 if quant.activations == "uint8" else QuantType.QInt8

    with tempfile.TemporaryDirectory(prefix="edgedistill-quant-") as tmp:
        pre = Path(tmp) / "preprocessed.onnx"

        def write(dst: Path) -> None:
            preprocess_onnx(fp32_path, pre)
            in_float = shape_nodes(onnx.load(str(pre), load_external_data=False).graph)  # shapes stay exact
            quantize_static(
                str(pre),
                str(dst),
                _calibration_reader(
                    CalibrationDataReader, calibration, input_name, calibration_batch(calibration, batch)
                ),
                quant_format=QuantFormat.QDQ,
                activation_type=activation_type,
                weight_type=QuantType.QInt8,
                per_channel=quant.per_channel,
                reduce_range=reduce_range(quant),
                calibrate_method=method,
                nodes_to_exclude=[*nodes_to_exclude, *in_float],
                nodes_to_quantize=None
                if nodes_to_quantize is None
                else [n for n in nodes_to_quantize if n not in in_float],
                op_types_to_quantize=list(TENSORRT_OPS) if for_tensorrt else None,
                extra_options=extra,
                **_cache_argument(quantize_static, ranges),
            )

        try:
            atomic_write(out_path, write)
        except (ValueError, RuntimeError, onnx.checker.ValidationError) as e:
            raise ExportError(f"{fp32_path}: ONNX Runtime quantization failed ({e})") from e
    return Path(out_path)
