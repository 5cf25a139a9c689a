"""The per-layer INT8 sensitivity report as the manifest stores it (`manifest.json` `sensitivity`)."""

from __future__ import annotations

from pydantic import Field

from edgedistill.config import StrictModel


class LayerSensitivity(StrictModel):
    """One quantized node of an INT8 model: how much its quantization costs."""

    node: str = Field(description="node name in the QDQ ONNX model (what nodes_to_exclude takes)")
    op_type: str
    sqnr_db: float = Field(
        description="SQNR of the node's output in the all-INT8 model vs FP32 (error of every layer up to here)"
    )
    local_sqnr_db: float = Field(
        description="SQNR of the error this node adds itself (its quantized inputs and weights); low = sensitive"
    )
    disagreement_pct: float | None = Field(
        None,
        ge=0,
        le=100,
        description="top-1 disagreement with FP32 when only this node is quantized; None: not measured",
    )


class SensitivityReport(StrictModel):
    """Per-layer INT8 sensitivity on unlabeled images, most sensitive layer first."""

    method: str = Field(description="the QDQ model measured and how Q/DQ ran")
    images: int = Field(gt=0, description="unlabeled pool images (never test labels)")
    source: str = "unlabeled pool"
    top_k: int = Field(
        ge=0, description="layers (lowest local SQNR first) whose single-layer disagreement was measured"
    )
    output_sqnr_db: float = Field(description="SQNR of the all-INT8 model's logits vs FP32")
    disagreement_pct: float = Field(ge=0, le=100, description="top-1 disagreement of the all-INT8 model with FP32")
    layers: list[LayerSensitivity]
    seconds: float = Field(ge=0)

    def worst(self, n: int = 3) -> list[LayerSensitivity]:
        """The `n` most sensitive layers: by single-layer disagreement where measured, then by local SQNR."""
        return sorted(self.layers, key=sensitivity_key)[:n]

    def worst_text(self, n: int = 3) -> str:
        """`'conv3' (41.0% disagree, local SQNR 2.1 dB), ...`: the worst layers for an error line or a console."""
        parts = []
        for layer in self.worst(n):
            what = "" if layer.disagreement_pct is None else f"{layer.disagreement_pct:.1f}% disagree, "
            parts.append(f"{layer.node!r} ({what}local SQNR {layer.local_sqnr_db:.1f} dB)")
        return ", ".join(parts)


def sensitivity_key(layer: LayerSensitivity) -> tuple[bool, float, float]:
    """Sort key, most sensitive first: measured disagreement (highest first), then local SQNR (lowest first)."""
    d = layer.disagreement_pct
    return (d is None, -(d or 0.0), layer.local_sqnr_db)
