"""The nodes of an ONNX graph that compute shapes, paddings or indices instead of activations.

A net exported with a dynamic batch computes some of these at run time: timm's "same" padding reads the input's
height and width (Shape → Gather → Div → Ceil → Sub → Clip → Concat → Pad's `pads`). ONNX Runtime's static quantizer
sees float Div/Sub/Clip/Concat nodes there and quantizes them like activations: the padding amounts go through a
uint8 Q/DQ pair, round to a wrong value, and every "same"-padded convolution after them computes on a shifted,
wrongly sized map (a Lite0 subnet at 224 px: 59 × 59 padded maps came out 58 × 58). These nodes must stay in float.
"""

from __future__ import annotations

from typing import Any

# op → indices of its inputs that are shapes, paddings, axes, indices or sizes rather than data
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Pad": (1, 3),
    "Reshape": (1,),
    "Slice": (1, 2, 3, 4),
    "Expand": (1,),
    "Tile": (1,),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "Unsqueeze": (1,),
    "Squeeze": (1,),
    "Split": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
}
SHAPE_SOURCES = ("Shape", "Size")  # read only a tensor's shape: the walk stops there


def shape_nodes(graph: Any) -> list[str]:
    """Names of the nodes whose outputs feed only shape-like inputs (`SHAPE_INPUTS`), walking back from those inputs
    to `Shape`/`Size` nodes, graph inputs and initializers; in graph order."""
    producer = {o: n for n in graph.node for o in n.output}
    found: set[int] = set()
    stack = [n.input[i] for n in graph.node for i in SHAPE_INPUTS.get(n.op_type, ()) if i < len(n.input)]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in found:
            continue
        found.add(id(node))
        if node.op_type not in SHAPE_SOURCES:
            stack.extend(t for t in node.input if t)
    return [n.name for n in graph.node if id(n) in found and n.name]
