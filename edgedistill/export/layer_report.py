"""Per-layer INT8 sensitivity report of a QDQ ONNX model: SQNR of every quantized node and, for the most sensitive,
the top-1 disagreement with FP32 when that node alone is quantized.

Two passes over unlabeled images, batch by batch (memory stays bounded on 224-px nets):

1. FP32 and all-INT8 together, every quantized node's output read: its SQNR against FP32 (`sqnr_db`, the error of
   every layer up to it) and the SQNR of the error it adds itself (`local_sqnr_db`: error powers add, so that is
   its output's relative error minus its inputs').
2. For the `top_k` lowest local SQNRs, a model with only that node quantized (the exporter's own quantizer, same
   calibration and scheme, via `requantize`), whose argmax is compared with FP32's.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgedistill.export.onnx2ort_int8 import preprocess_onnx, quantize_onnxruntime
from edgedistill.export.sensitivity import float_qdq_session, with_outputs
from edgedistill.export.sensitivity_schema import LayerSensitivity, SensitivityReport, sensitivity_key

if TYPE_CHECKING:
    from edgedistill.export.job import ExportJob

MAX_SQNR_DB = 120.0  # float32 rounding sits near 140 dB; anything above this is "exact" and JSON needs a number
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SHAPE_OPS = ("Shape", "Size")  # read a dequantized tensor's shape only: no quantization error of their own

# (node names to quantize, output path) → that path: the exporter's quantizer with every other node in float
Requantize = Callable[[list[str], Path], Path]


def sqnr_db(signal: float, noise: float) -> float:
    """10·log10(signal / noise), capped at `MAX_SQNR_DB` (no noise) and floored at -`MAX_SQNR_DB`."""
    if noise <= signal * 10 ** (-MAX_SQNR_DB / 10):
        return MAX_SQNR_DB
    if signal <= 0:
        return -MAX_SQNR_DB
    return max(-MAX_SQNR_DB, 10 * math.log10(signal / noise))


Pair = tuple[str, str]  # (tensor name in the float model, tensor name in the QDQ model) of one value


@dataclass
class _Node:
    """A quantized node: its output and its data inputs as (float, QDQ) tensor-name pairs."""

    name: str
    op_type: str
    output: Pair
    inputs: list[Pair]


@dataclass
class _Energy:
    """Running sums of ‖f‖² and ‖q − f‖² per tensor."""

    signal: dict[Pair, float] = field(default_factory=dict)
    noise: dict[Pair, float] = field(default_factory=dict)

    def add(self, name: Pair, ref: np.ndarray, got: np.ndarray) -> None:
        f, q = ref.astype(np.float64), got.astype(np.float64)
        self.signal[name] = self.signal.get(name, 0.0) + float(np.sum(f * f))
        self.noise[name] = self.noise.get(name, 0.0) + float(np.sum((q - f) ** 2))

    def rel(self, name: Pair) -> float:
        """Relative error power (0 for a tensor both models share exactly, e.g. the graph input)."""
        if name not in self.signal:
            return 0.0
        return self.noise[name] / max(self.signal[name], 1e-30)

    def sqnr(self, name: Pair) -> float:
        return sqnr_db(self.signal.get(name, 1.0), self.noise.get(name, 0.0))


def quantized_layers(float_path: Path, qdq_path: Path) -> list[_Node]:
    """Every non-Q/DQ node of the QDQ model that reads a dequantized tensor, in graph order.

    Each Q/DQ pair is charged to one node. A node whose output the quantizer quantizes (ONNX Runtime's layout)
    owns that pair: its output is read after it, and its consumers take it as their (already charged) input. A pair
    on a tensor no quantized node produced (the graph input, TensorRT's layout) is charged to its consumer, whose
    input error is then read before the pair. Weights (a DQ of an initializer, or of a Q of one) are the node's own.
    """
    import onnx

    ref = onnx.load(str(float_path)).graph
    known = {t for n in ref.node for t in n.output} | {i.name for i in ref.input}
    graph = onnx.load(str(qdq_path)).graph
    inits = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def reads_dq(n: onnx.NodeProto) -> bool:
        return n.op_type not in QDQ_OPS and any(
            getattr(producer.get(i), "op_type", "") == "DequantizeLinear" for i in n.input
        )

    def output_pair(n: onnx.NodeProto) -> Pair | None:
        """The node's output after its own Q/DQ pair when it has one (a removed Relu lives in that Q), else as is."""
        out = n.output[0]
        for q in consumers.get(out, []):
            for dq in consumers.get(q.output[0], []) if q.op_type == "QuantizeLinear" else []:
                if dq.op_type == "DequantizeLinear":
                    name = dq.output[0] if dq.output[0] in known else out
                    return (name, dq.output[0]) if name in known else None
        return (out, out) if out in known else None

    def input_pair(t: str) -> Pair | None:
        dq = producer.get(t)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None if t in inits or t not in known else (t, t)
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            return None  # a weight
        src = q.input[0]
        owner = producer.get(src)
        if owner is not None and reads_dq(owner):
            pair = output_pair(owner)
            return (pair[0], t) if pair is not None else None
        return (src, src) if src in known else None

    layers = []
    for n in graph.node:
        if not n.name or not n.output or n.op_type in SHAPE_OPS or not reads_dq(n):
            continue
        out = output_pair(n)
        if out is None:
            continue
        inputs = [p for p in (input_pair(i) for i in n.input if i) if p is not None]
        layers.append(_Node(n.name, n.op_type, out, inputs))
    return layers


def _batches(images: np.ndarray, batch: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(images[i : i + batch], dtype=np.float32) for i in range(0, len(images), batch)]


def _predictions(model: bytes | Path, images: np.ndarray, batch: int) -> np.ndarray:
    session = float_qdq_session(model)
    name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    return np.concatenate([session.run([out], {name: x})[0].argmax(axis=1) for x in _batches(images, batch)])


def _energies(float_path: Path, qdq_path: Path, images: np.ndarray, pairs: list[Pair], batch: int) -> _Energy:
    """‖f‖² and ‖q − f‖² of every (float, QDQ) tensor pair, keyed by the pair, and of the logits (key ("", "")),
    over `images`, one batch at a time."""
    ref_names = sorted({p[0] for p in pairs})
    got_names = sorted({p[1] for p in pairs})
    ref = float_qdq_session(with_outputs(float_path, ref_names))
    got = float_qdq_session(with_outputs(qdq_path, got_names))
    logits, feed = ref.get_outputs()[0].name, ref.get_inputs()[0].name
    ref_out = [logits, *(o.name for o in ref.get_outputs()[1:])]
    got_out = [got.get_outputs()[0].name, *(o.name for o in got.get_outputs()[1:])]
    energy = _Energy()
    for x in _batches(images, batch):
        a = dict(zip(ref_out, ref.run(ref_out, {feed: x}), strict=True))
        b = dict(zip(got_out, got.run(got_out, {feed: x}), strict=True))
        energy.add(("", ""), a[logits], b[got_out[0]])
        for pair in pairs:
            if pair[0] in a and pair[1] in b:
                energy.add(pair, a[pair[0]], b[pair[1]])
    return energy


def layer_report(
    float_path: Path,
    qdq_path: Path,
    images: np.ndarray,
    requantize: Requantize | None,
    *,
    top_k: int = 8,
    method: str,
    batch: int = 32,
) -> SensitivityReport:
    """Per-layer sensitivity of `qdq_path` against `float_path` on `images` (see the module docstring).

    Args:
        float_path: The float model whose node and tensor names the quantizer kept (ORT's pre-processed model).
        qdq_path: The all-INT8 QDQ model.
        images: Unlabeled inputs (NCHW float32, normalised), not the test split.
        requantize: Builds the model with only the given nodes quantized; None measures no disagreement.
        top_k: How many layers (lowest local SQNR first) get a single-layer model; the rest stay unmeasured.
        method: What was measured, for the report (e.g. the runtime whose scheme the QDQ model has).

    Returns:
        The report, most sensitive layer first.
    """
    start = time.perf_counter()
    nodes = quantized_layers(float_path, qdq_path)
    pairs = sorted({p for n in nodes for p in (n.output, *n.inputs)})
    energy = _energies(float_path, qdq_path, images, pairs, batch)
    rows = []
    for n in nodes:
        added = energy.rel(n.output) - max((energy.rel(i) for i in n.inputs), default=0.0)
        local = sqnr_db(1.0, max(added, 0.0))
        rows.append(
            LayerSensitivity(node=n.name, op_type=n.op_type, sqnr_db=energy.sqnr(n.output), local_sqnr_db=local)
        )
    rows.sort(key=sensitivity_key)
    fp32_pred = _predictions(float_path, images, batch)
    full = 100.0 * float(np.mean(_predictions(qdq_path, images, batch) != fp32_pred))
    if requantize is not None and top_k > 0:
        with tempfile.TemporaryDirectory(prefix="edgedistill-sensitivity-") as tmp:
            for i, row in enumerate(rows[:top_k]):
                single = requantize([row.node], Path(tmp) / f"single-{i}.onnx")
                pred = _predictions(single, images, batch)
                rows[i] = row.model_copy(update={"disagreement_pct": 100.0 * float(np.mean(pred != fp32_pred))})
        rows.sort(key=sensitivity_key)
    return SensitivityReport(
        method=method,
        images=len(images),
        top_k=min(top_k, len(rows)) if requantize is not None else 0,
        output_sqnr_db=energy.sqnr(("", "")),
        disagreement_pct=full,
        layers=rows,
        seconds=round(time.perf_counter() - start, 3),
    )


METHODS = {
    "onnxruntime": "this artifact's QDQ model in ONNX Runtime CPU, Q/DQ run as float ops",
    "tensorrt": "this artifact's explicit-QDQ model in ONNX Runtime CPU, Q/DQ run as float ops (TensorRT's arithmetic)",
    "openvino": "proxy: an ONNX Runtime QDQ model with the recipe's scheme (int8 per-channel symmetric weights, "
    "per-tensor activations), not NNCF's own FakeQuantize placement",
}


def export_sensitivity(
    job: ExportJob,
    qdq: Path | None,
    calibration: np.ndarray,
    *,
    for_tensorrt: bool = False,
    ranges: Path | None = None,
) -> SensitivityReport | None:
    """The sensitivity report of an INT8 export, or None when its settings turn it off (`images: 0`).

    Args:
        job: The export (its FP32 model, recipe, settings and unlabeled pool).
        qdq: The artifact's QDQ ONNX model; None (OpenVINO) measures a QDQ proxy with the recipe's scheme.
        calibration: The artifact's calibration set: single-layer models are quantized with it.
        for_tensorrt: TensorRT's QDQ layout (as the artifact).
        ranges: The artifact's calibration cache (see `quantize_onnxruntime`); None: one in a temporary folder, so
            the single-layer models calibrate once between them.
    """
    settings = job.sensitivity
    if settings.images == 0:
        return None
    images = job.unlabeled(settings.images)
    with tempfile.TemporaryDirectory(prefix="edgedistill-sensitivity-") as tmp:
        pre = preprocess_onnx(job.fp32, Path(tmp) / "pre.onnx")
        cache = ranges or Path(tmp) / "ranges.json"
        if qdq is None:
            qdq = quantize_onnxruntime(job.fp32, Path(tmp) / "proxy.onnx", calibration, job.quant, ranges=cache)

        def requantize(nodes: list[str], out: Path) -> Path:
            return quantize_onnxruntime(
                job.fp32, out, calibration, job.quant, nodes_to_quantize=nodes, for_tensorrt=for_tensorrt, ranges=cache
            )

        method = METHODS.get(job.recipe.runtime, METHODS["onnxruntime"])
        method += "; single-layer models: the exporter's quantizer with the same calibration, only that node quantized"
        return layer_report(pre, qdq, images, requantize, top_k=settings.top_k, method=method)
