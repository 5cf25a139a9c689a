"""ONNX Runtime helpers of the INT8 sensitivity report (`layer_report`), and the greedy mixed-precision search.

The report reads intermediate tensors through extra graph outputs in a session that runs Q/DQ as float ops; the
greedy search puts layers back in float in the report's sensitivity order, 1, 2, 4, ... at a time, until the
caller's check passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class FallbackResult:
    """Outcome of `greedy_fallback`: layers kept in float, the last check's value and whether it passed."""

    excluded: list[str]
    value: float
    passed: bool


def with_outputs(model_path: Path, names: Sequence[str]) -> bytes:
    """The model with extra graph outputs, so intermediate tensors can be read.

    Each output gets its tensor's inferred element type: a tensor read for its error can be an integer one (the
    Shape feeding a Reshape before the classifier), and ONNX Runtime rejects an output declared with another type.
    """
    import onnx

    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    tensors = {t for n in model.graph.node for t in n.output}
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    types = {v.name: v.type.tensor_type.elem_type for v in inferred if v.type.tensor_type.elem_type}
    for name in names:
        if name in tensors and name not in existing:
            elem = types.get(name, onnx.TensorProto.FLOAT)
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
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
