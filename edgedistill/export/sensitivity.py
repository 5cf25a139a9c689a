"""Per-layer INT8 sensitivity of a QDQ model, and the greedy mixed-precision search that keeps layers in float.

Cheap by design: one run of the FP32 and the INT8 model over a few hundred images gives each layer's *local*
quantization error (relative error of its output minus that of its input), then layers are put back in float
in sensitivity order, 1, 2, 4, ... at a time, until the caller's check passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class FallbackResult:
    """Outcome of `greedy_fallback`: layers kept in float, the last check's value and whether it passed."""

    excluded: list[str]
    value: float
    passed: bool


def quantized_nodes(qdq_path: Path) -> set[str]:
    """Names of the nodes of a QDQ model that read a dequantized input (every op the quantizer quantized)."""
    import onnx

    graph = onnx.load(str(qdq_path)).graph
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    skip = ("QuantizeLinear", "DequantizeLinear")
    return {n.name for n in graph.node if n.op_type not in skip and n.name and any(i in dq for i in n.input)}


def with_outputs(model_path: Path, names: Sequence[str]) -> bytes:
    """The model with extra float graph outputs, so intermediate tensors can be read."""
    import onnx

    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    tensors = {t for n in model.graph.node for t in n.output}
    for name in names:
        if name in tensors and name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()


def float_qdq_session(model: bytes | Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session that keeps every named tensor and runs Q/DQ as float ops (no int8 fusion)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # keep the named tensors
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def _run(model: bytes, images: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    session = float_qdq_session(model)
    outputs = [o.name for o in session.get_outputs() if o.name in names]
    values = session.run(outputs, {session.get_inputs()[0].name: images})
    return dict(zip(outputs, values, strict=True))


def layer_sensitivity(float_path: Path, qdq_path: Path, images: np.ndarray) -> dict[str, float]:
    """Local quantization error of each quantized node (Conv, Gemm, Add, pools, ...), largest first.

    Args:
        float_path: The float model whose node names quantization used (ORT's pre-processed model).
        qdq_path: Its QDQ-quantized version (original tensor names are kept as float tensors).
        images: Representative inputs (NCHW float32), e.g. unlabeled target images not used for calibration.

    Returns:
        node name → relative squared error of its output minus that of its data input (≥ 0).
    """
    import onnx

    graph = onnx.load(str(float_path)).graph
    quantized = quantized_nodes(qdq_path)
    nodes = [n for n in graph.node if n.name in quantized and n.input]
    names = sorted({t for n in nodes for t in (n.input[0], n.output[0])})
    ref = _run(with_outputs(float_path, names), images, names)
    got = _run(with_outputs(qdq_path, names), images, names)

    def rel_err(t: str) -> float:
        if t not in ref or t not in got:  # a graph input or a tensor the quantizer renamed: no error known
            return 0.0
        f, q = ref[t].astype(np.float64), got[t].astype(np.float64)
        return float(np.sum((q - f) ** 2) / (np.sum(f**2) + 1e-12))

    scores = {n.name: max(0.0, rel_err(n.output[0]) - rel_err(n.input[0])) for n in nodes}
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def greedy_fallback(
    ranked: Sequence[str], check: Callable[[list[str]], tuple[float, bool]]
) -> tuple[FallbackResult, list[FallbackResult]]:
    """Keep the top 1, 2, 4, ... most sensitive layers in float until `check(excluded)` passes.

    Args:
        ranked: Layer names, most sensitive first.
        check: Builds the model with those layers in float and returns (value, passed), e.g. (drop, drop ≤ max).

    Returns:
        The first passing attempt (or the last one), and every attempt made. At least one layer stays quantized:
        a model with every layer in float is not an INT8 model, whatever its manifest would say.
    """
    tried: list[FallbackResult] = []
    most = max(1, len(ranked) - 1)
    k = 1
    while True:
        excluded = list(ranked[: min(k, most)])
        value, passed = check(excluded)
        tried.append(FallbackResult(excluded, value, passed))
        if passed or k >= most:
            return tried[-1], tried
        k *= 2
