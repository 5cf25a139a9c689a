"""Seconds of the INT8 sensitivity report's single-layer models with and without the artifact's calibration cache.

An INT8 export quantizes the artifact, then (sensitivity report, `--fallback auto`'s mixed precision) quantizes the
same FP32 model again with only some nodes in INT8. Tensor ranges do not depend on which nodes are quantized, so the
export keeps ONNX Runtime's calibration cache of the artifact and the later models reuse it instead of calibrating
again. This times both ways on timm's MobileNetV3-Large (random weights: the time does not depend on them) at 224 px
with 300 calibration images, the recipe's default, and checks that both give the same report.

Usage: python bench/sensitivity_cache.py [--top-k 8] [--out bench/results/sensitivity_cache]
Writes OUT.json and OUT.md with the machine's CPU and flags.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from results_io import machine_line, write_results  # bench/, next to this file

from edgedistill.bench.machine import machine_info
from edgedistill.export.layer_report import layer_report
from edgedistill.export.onnx2ort_int8 import preprocess_onnx, quantize_onnxruntime
from edgedistill.export.torch2onnx import torch_to_onnx
from edgedistill.recipe import Quantization

REPO = Path(__file__).resolve().parents[1]
MODEL, SIDE, CALIBRATION, IMAGES = "mobilenetv3_large_100", 224, 300, 64


def measure(tmp: Path, cached: bool, top_k: int) -> dict[str, Any]:
    """Quantize the artifact, then the report with `top_k` single-layer models; seconds of each and the ranking."""
    torch.manual_seed(0)
    net = timm.create_model(MODEL, pretrained=False, num_classes=14).eval()
    fp32 = torch_to_onnx(net, (1, 3, SIDE, SIDE), tmp / "fp32.onnx")
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((CALIBRATION, 3, SIDE, SIDE), dtype=np.float32)
    images = rng.standard_normal((IMAGES, 3, SIDE, SIDE), dtype=np.float32)
    quant = Quantization(per_channel=True, reduce_range=True)
    ranges = tmp / "ranges.json" if cached else None
    start = time.perf_counter()
    qdq = quantize_onnxruntime(fp32, tmp / "int8.onnx", calib, quant, ranges=ranges)
    artifact_s = time.perf_counter() - start

    def requantize(nodes: list[str], out: Path) -> Path:
        return quantize_onnxruntime(fp32, out, calib, quant, nodes_to_quantize=nodes, ranges=ranges)

    start = time.perf_counter()
    report = layer_report(preprocess_onnx(fp32, tmp / "pre.onnx"), qdq, images, requantize, top_k=top_k, method="t")
    return {
        "cache": cached,
        "artifact_s": round(artifact_s, 1),
        "report_s": round(time.perf_counter() - start, 1),
        "ranking": [(r.node, r.disagreement_pct) for r in report.layers[:top_k]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sensitivity_cache")
    args = ap.parse_args()
    rows = []
    for cached in (False, True):
        with tempfile.TemporaryDirectory(prefix="sensitivity-cache-") as tmp:
            rows.append(measure(Path(tmp), cached, args.top_k))
            print(f"cache {cached}: artifact {rows[-1]['artifact_s']} s, report {rows[-1]['report_s']} s", flush=True)
    same = rows[0]["ranking"] == rows[1]["ranking"]
    m = machine_info()
    record = {"model": MODEL, "side": SIDE, "calibration": CALIBRATION, "images": IMAGES, "top_k": args.top_k,
              "rows": rows, "same_report": same, "machine": m,
              "command": f"python bench/sensitivity_cache.py --top-k {args.top_k}"}  # fmt: skip
    lines = [
        "# INT8 sensitivity report: calibration cache",
        "",
        f"`{record['command']}`: timm `{MODEL}` (random weights) at {SIDE} px, {CALIBRATION} calibration images, "
        f"{IMAGES} report images, {args.top_k} single-layer models, ONNX Runtime quantizer.",
        f"Machine: {machine_line(m)}.",
        "",
        "| calibration of the single-layer models | artifact quantization s | report s |",
        "|---|---|---|",
        *(
            f"| {'cached ranges' if r['cache'] else 'calibrated again'} | {r['artifact_s']} | {r['report_s']} |"
            for r in rows
        ),  # fmt: skip
        "",
        f"Same ranking and single-layer disagreements both ways: {'yes' if same else '**no**'}.",
        "",
    ]
    write_results(args.out, record, lines)


if __name__ == "__main__":
    main()
