"""Does an artifact hold what its manifest says? Precision, input and output, opset, read from the model itself.

A sha256 only proves that the files did not change after the manifest was written; a model swapped for another and
hashed again passes it. These checks read the model graph (ONNX protobuf, OpenVINO IR XML) and compare it with the
manifest before an artifact is benchmarked or emitted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # stdlib; expat expands no external entities
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import ExportError
from edgedistill.registry import Registry

# Nodes that only a quantized ONNX graph has (QDQ, QOperator and integer-op formats).
ONNX_QUANT_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
)


@dataclass(frozen=True)
class ModelFacts:
    """What the model file says about itself."""

    quantized: bool
    input_name: str
    input_shape: list[int]  # -1 for a dynamic dimension
    output_width: int | None  # classes of the (first) output, when static
    opset: int | None


Reader = Callable[[Path], ModelFacts]
MODEL_READERS: Registry[Reader] = Registry("model format")


@MODEL_READERS.register(".onnx")
def _onnx(path: Path) -> ModelFacts:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError types
        raise ExportError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None

    def dims(value_info: onnx.ValueInfoProto) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]

    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs or not graph.output:
        raise ExportError(f"{path}: the ONNX graph has no input or no output")
    out = dims(graph.output[0])
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    quantized = any(n.op_type in ONNX_QUANT_OPS for n in graph.node)
    return ModelFacts(quantized, inputs[0].name, dims(inputs[0]), out[-1] if out and out[-1] > 0 else None, opset)


@MODEL_READERS.register(".xml")
def _openvino_ir(path: Path) -> ModelFacts:
    try:
        layers = ET.parse(path).getroot().find("layers")
    except ET.ParseError as e:
        raise ExportError(f"{path}: not a readable OpenVINO IR ({e})") from None
    if layers is None:
        raise ExportError(f"{path}: not an OpenVINO IR (no <layers>)")

    def port_dims(port: ET.Element | None) -> list[int]:
        return [] if port is None else [int(d.text) if d.text and d.text.strip().isdigit() else -1 for d in port]

    params = [la for la in layers if la.get("type") == "Parameter"]
    results = [la for la in layers if la.get("type") == "Result"]
    if not params or not results:
        raise ExportError(f"{path}: the IR has no Parameter or no Result layer")
    p_port = params[0].find("output/port")
    names = (p_port.get("names") if p_port is not None else None) or params[0].get("name") or ""
    r_dims = port_dims(results[0].find("input/port"))
    quantized = any(_ir_quantized(la) for la in layers)
    width = r_dims[-1] if r_dims and r_dims[-1] > 0 else None
    return ModelFacts(quantized, names.split(",")[0], port_dims(p_port), width, None)


def _ir_quantized(layer: ET.Element) -> bool:
    if layer.get("type") == "FakeQuantize":
        return True
    data = layer.find("data")
    return layer.get("type") == "Const" and data is not None and data.get("element_type") in ("i8", "u8")


def check_model_file(path: Path, claimed: ModelFacts, precision: str) -> None:
    """Raise when the model file at `path` contradicts what its manifest `claimed` (as `precision`).

    Formats without a reader (a TensorRT engine) are checked through the ONNX file they are built from.

    Raises:
        ExportError: one line naming the file and the first contradiction.
    """
    try:
        reader = MODEL_READERS.get(path.suffix.lower())
    except KeyError:
        return
    facts = reader(path)
    problems = []
    if facts.quantized != claimed.quantized:
        got = "has quantized nodes" if facts.quantized else "has no quantized nodes"
        problems.append(f"the manifest says {precision} but the model {got}")
    if facts.input_name != claimed.input_name:
        problems.append(f"input is named '{facts.input_name}', the manifest says '{claimed.input_name}'")
    want = claimed.input_shape
    if len(facts.input_shape) != len(want) or any(
        w != -1 and g != -1 and g != w for g, w in zip(facts.input_shape, want, strict=False)
    ):
        problems.append(f"input shape {facts.input_shape}, the manifest says {want}")
    if None not in (facts.output_width, claimed.output_width) and facts.output_width != claimed.output_width:
        problems.append(f"{facts.output_width} outputs, the manifest lists {claimed.output_width} classes")
    if None not in (facts.opset, claimed.opset) and facts.opset != claimed.opset:
        problems.append(f"opset {facts.opset}, the manifest says {claimed.opset}")
    if problems:
        raise ExportError(f"{path}: does not match its manifest: {problems[0]}; export it again")
