"""`--fallback auto` for ONNX Runtime QDQ models: keep the most sensitive layers in float until the drop fits.

The latency cost is measured by timing the all-INT8 and the mixed model, each in its own process with the
torch-free bench runner.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgedistill.bench.launch import run_isolated
from edgedistill.errors import EdgedistillError, ExportError
from edgedistill.export.inspect import MODEL_READERS
from edgedistill.export.layer_report import layer_report
from edgedistill.export.manifest import FallbackInfo, Manifest, write_manifest
from edgedistill.export.onnx2ort_int8 import preprocess_onnx, quantize_onnxruntime
from edgedistill.export.sensitivity import greedy_fallback
from edgedistill.io import atomic_write
from edgedistill.recipe import Quantization

DropOf = Callable[[Path], float]


def ort_mixed_precision(
    fp32: Path,
    full_int8: Path,
    out: Path,
    calibration: np.ndarray,
    quant: Quantization,
    *,
    drop_of: DropOf,
    max_drop: float,
    sensitivity_images: np.ndarray,
    for_tensorrt: bool = False,
    ranges: Path | None = None,
) -> FallbackInfo:
    """Rank layers by the sensitivity report's local SQNR, then re-quantize with the top 1, 2, 4, ... kept in float.

    Args:
        fp32: The FP32 ONNX model.
        full_int8: Its all-INT8 QDQ model (whose drop exceeded the budget).
        out: Where the chosen mixed model is written (atomically).
        drop_of: Accuracy drop in points of a candidate model against FP32.
        max_drop: The budget's limit.
        sensitivity_images: Representative images for the ranking (not the calibration set: a bad calibration
            set is the case this exists for).
        ranges: The calibration cache of `full_int8` (see `quantize_onnxruntime`): candidates reuse its ranges.

    Returns:
        What was kept in float and the drops before and after (latency not yet filled in).
    """
    drop_before = drop_of(full_int8)
    with tempfile.TemporaryDirectory(prefix="edgedistill-fallback-") as tmp:
        pre = preprocess_onnx(fp32, Path(tmp) / "pre.onnx")
        # The report's local SQNR (the error each node adds itself), lowest first; it reads the tensors of nodes whose
        # outputs ONNX Runtime renamed (fused Conv+Relu) through their Q/DQ pairs, so no layer is missed.
        report = layer_report(pre, full_int8, sensitivity_images, None, top_k=0, method="fallback ranking")
        scores = {row.node: row.local_sqnr_db for row in report.layers}

        def check(excluded: list[str]) -> tuple[float, bool]:
            cand = Path(tmp) / f"mixed-{len(excluded)}.onnx"
            quantize_onnxruntime(
                fp32, cand, calibration, quant, nodes_to_exclude=excluded, for_tensorrt=for_tensorrt, ranges=ranges
            )
            drop = drop_of(cand)
            return drop, drop <= max_drop and MODEL_READERS.get(".onnx")(cand).quantized  # a float model is no fix

        best, _ = greedy_fallback(list(scores), check)
        chosen = Path(tmp) / f"mixed-{len(best.excluded)}.onnx"
        if not MODEL_READERS.get(".onnx")(chosen).quantized:
            raise ExportError(
                f"{out}: --fallback auto: with {len(best.excluded)} of {len(scores)} layers in float the quantizer "
                f"leaves nothing in INT8 (drop {drop_before:.2f} pts before), so no INT8 model meets "
                "accuracy.max_int8_drop_pts; check the calibration images (--calibration-samples, the recipe's "
                "quantization settings), or export a float precision"
            )
        atomic_write(out, lambda p: shutil.copyfile(chosen, p))
    return FallbackInfo(
        method="sensitivity report: local SQNR per layer (lowest first), greedy 1, 2, 4, ... layers in float",
        layers_in_fp=best.excluded,
        quantizable_layers=len(scores),
        drop_before_pts=drop_before,
        drop_after_pts=best.value,
        fixed=best.passed,
        sensitivity={k: round(v, 3) for k, v in list(scores.items())[:10]},
    )


def latency_cost(
    manifest: Manifest, int8: Path, mixed: Path, threads: int, batch: int, runs: int = 100
) -> tuple[dict[str, float], str | None]:
    """p50 latency (ms) of the all-INT8 and the mixed model with ONNX Runtime CPU, each in its own process.

    Returns:
        {"int8": p50, "mixed": p50} (empty when timing failed) and a note.
    """
    p50: dict[str, float] = {}
    args = ["--threads", str(threads), "--runs", str(runs), "--warmup", "10", "--batch", str(batch)]
    with tempfile.TemporaryDirectory(prefix="edgedistill-fallback-bench-") as tmp:
        for key, model in (("int8", int8), ("mixed", mixed)):
            art = Path(tmp) / key
            art.mkdir()
            shutil.copyfile(model, art / "model.onnx")
            m = manifest.model_copy(
                update={"runtime": "onnxruntime", "model_file": "model.onnx", "files": {}, "engine": None}
            )
            write_manifest(art, m)
            try:
                p50[key] = float(run_isolated("edgedistill.bench.runner", [str(art), *args])["stats"]["p50"])
            except EdgedistillError as e:
                return {}, f"latency not measured: {e}"
    note = f"ONNX Runtime CPU on this machine, {threads} thread(s), batch {batch}, {runs} runs"
    if manifest.runtime == "tensorrt":
        note += "; TensorRT fuses differently: time the engines on the device"
    return p50, note
