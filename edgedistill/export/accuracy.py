"""Top-1 accuracy of a model (ONNX Runtime or any runtime's predict function), and INT8-vs-FP32 comparison."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.runtimes import ort_session
from edgedistill.errors import ExportError


@dataclass
class Accuracy:
    """Top-1 accuracy on one split.

    Attributes:
        top1: Percent correct.
        n: Number of images.
        predictions: Predicted class per image, in input order (for agreement between models).
    """

    top1: float
    n: int
    predictions: np.ndarray


def model_accuracy(
    predict: Callable[[np.ndarray], np.ndarray], batches: Iterable[tuple[np.ndarray, np.ndarray]], name: str
) -> Accuracy:
    """Score top-1 of any runtime: `predict` maps an NCHW float32 batch to logits.

    Raises:
        ExportError: No images were given.
    """
    preds, correct, n = [], 0, 0
    for images, labels in batches:
        pred = np.asarray(predict(np.ascontiguousarray(images, dtype=np.float32))).argmax(axis=1)
        correct += int((pred == np.asarray(labels)).sum())
        n += len(pred)
        preds.append(pred)
    if n == 0:
        raise ExportError(f"{name}: accuracy needs at least one labelled image")
    return Accuracy(top1=100.0 * correct / n, n=n, predictions=np.concatenate(preds))


def onnx_accuracy(
    path: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int = 2, fake_quant: bool = False
) -> Accuracy:
    """Run an ONNX model on (images NCHW float32, integer labels) batches and score top-1.

    Args:
        fake_quant: Run Q/DQ as float ops (no QDQ→integer-kernel fusion). This is the arithmetic TensorRT
            implements (int32 accumulation), free of the int16 saturation of u8s8 x86 kernels without VNNI.

    Raises:
        ExportError: No images were given.
    """
    session = _fake_quant_session(path, threads) if fake_quant else ort_session(path, threads)
    input_name = session.get_inputs()[0].name
    return model_accuracy(lambda x: session.run(None, {input_name: x})[0], batches, str(path))


def onnx_predictor(path: Path, threads: int = 2, fake_quant: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """`x → logits` of an ONNX model in ONNX Runtime CPU (`fake_quant`: Q/DQ in float, see `onnx_accuracy`)."""
    session = _fake_quant_session(path, threads) if fake_quant else ort_session(path, threads)
    input_name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})[0])


def _fake_quant_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # QDQ fusion is level 2
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def compare_accuracy(ref: Accuracy, other: Accuracy) -> dict[str, float]:
    """Accuracy drop of `other` against `ref` in points, and top-1 agreement in percent.

    Raises:
        ExportError: The two were measured on different numbers of images.
    """
    if ref.n != other.n:
        raise ExportError(f"cannot compare accuracies over different image counts ({ref.n} vs {other.n})")
    agreement = 100.0 * float(np.mean(ref.predictions == other.predictions))
    return {"drop_pts": ref.top1 - other.top1, "agreement": agreement}
