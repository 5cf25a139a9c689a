"""Top-1 accuracy of a model (ONNX Runtime or any runtime's predict function), and INT8-vs-FP32 comparison."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.runtimes import ort_session
from edgedistill.errors import ExportError

METRICS = ("top1", "balanced")  # what the INT8 guard can compare (budget `accuracy.metric`)


@dataclass
class Accuracy:
    """Top-1 accuracy on one split.

    Attributes:
        top1: Percent correct.
        n: Number of images.
        predictions: Predicted class per image, in input order (for agreement between models).
        labels: The true class per image, in the same order (None when not kept).
    """

    top1: float
    n: int
    predictions: np.ndarray
    labels: np.ndarray | None = None

    def per_class(self) -> dict[int, tuple[int, float]]:
        """class index → (test images, percent of them predicted right), for every class the split has."""
        if self.labels is None:
            raise ExportError("per-class accuracy needs the labels (this Accuracy was built without them)")
        out = {}
        for c in np.unique(self.labels):
            rows = self.labels == c
            out[int(c)] = (int(rows.sum()), 100.0 * float(np.mean(self.predictions[rows] == c)))
        return out

    @property
    def balanced(self) -> float:
        """Balanced accuracy: the mean of the per-class accuracies (top-1 when every class has as many images)."""
        return float(np.mean([acc for _, acc in self.per_class().values()]))

    def metric(self, name: str) -> float:
        """`top1` or `balanced`, in percent."""
        if name not in METRICS:
            raise ExportError(f"unknown accuracy metric {name!r}; known: {', '.join(METRICS)}")
        return self.top1 if name == "top1" else self.balanced


def model_accuracy(
    predict: Callable[[np.ndarray], np.ndarray], batches: Iterable[tuple[np.ndarray, np.ndarray]], name: str
) -> Accuracy:
    """Score top-1 of any runtime: `predict` maps an NCHW float32 batch to logits.

    Raises:
        ExportError: No images were given.
    """
    preds, truth = [], []
    for images, labels in batches:
        logits = np.asarray(predict(np.ascontiguousarray(images, dtype=np.float32)))
        if logits.ndim != 2:
            raise ExportError(f"{name}: the model returns shape {logits.shape}; expected (batch, classes) logits")
        preds.append(logits.argmax(axis=1))
        truth.append(np.asarray(labels).reshape(-1))
    n = sum(len(p) for p in preds)
    if n == 0:
        raise ExportError(f"{name}: accuracy needs at least one labelled image")
    pred, labels = np.concatenate(preds), np.concatenate(truth)
    return Accuracy(top1=100.0 * float(np.mean(pred == labels)), n=n, predictions=pred, labels=labels)


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


def compare_accuracy(ref: Accuracy, other: Accuracy, metric: str = "top1") -> dict[str, float]:
    """Accuracy drop of `other` against `ref` in points of `metric` (top1 | balanced), and top-1 agreement in %.

    Raises:
        ExportError: The two were measured on different numbers of images.
    """
    if ref.n != other.n:
        raise ExportError(f"cannot compare accuracies over different image counts ({ref.n} vs {other.n})")
    agreement = 100.0 * float(np.mean(ref.predictions == other.predictions))
    return {"drop_pts": ref.metric(metric) - other.metric(metric), "agreement": agreement}
