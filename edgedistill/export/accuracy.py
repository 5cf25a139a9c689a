"""Top-1 accuracy of an ONNX model with ONNX Runtime, and INT8-vs-FP32 comparison."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def onnx_accuracy(path: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int = 2) -> Accuracy:
    """Run an ONNX model on (images NCHW float32, integer labels) batches and score top-1.

    Raises:
        ExportError: No images were given.
    """
    session = ort_session(path, threads)
    input_name = session.get_inputs()[0].name
    preds, correct, n = [], 0, 0
    for images, labels in batches:
        logits = session.run(None, {input_name: np.ascontiguousarray(images, dtype=np.float32)})[0]
        pred = np.asarray(logits).argmax(axis=1)
        correct += int((pred == np.asarray(labels)).sum())
        n += len(pred)
        preds.append(pred)
    if n == 0:
        raise ExportError(f"{path}: accuracy needs at least one labelled image")
    return Accuracy(top1=100.0 * correct / n, n=n, predictions=np.concatenate(preds))


def compare_accuracy(ref: Accuracy, other: Accuracy) -> dict[str, float]:
    """Accuracy drop of `other` against `ref` in points, and top-1 agreement in percent.

    Raises:
        ExportError: The two were measured on different numbers of images.
    """
    if ref.n != other.n:
        raise ExportError(f"cannot compare accuracies over different image counts ({ref.n} vs {other.n})")
    agreement = 100.0 * float(np.mean(ref.predictions == other.predictions))
    return {"drop_pts": ref.top1 - other.top1, "agreement": agreement}
