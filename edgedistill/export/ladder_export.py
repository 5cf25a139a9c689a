"""`--fallback auto`'s post-training rungs: each rung's weights go through the target's own INT8 exporter.

After plain post-training INT8 misses `accuracy.max_int8_drop_pts`, the recipe's `quantization.ladder.rungs` are tried
in order (`ptq_ladder.py`: bias correction, then AdaRound with bias correction). The first rung whose all-INT8 artifact
fits is kept. When none fits, mixed precision and QAD go on from the subnet's own weights: a rung's corrections
compensate the error of the layers quantized with them, so they would be wrong in a layer kept in float (measured on
a 64-px Lite0 subnet: mixed precision from the bias-corrected weights dropped 9.6 pts, all-INT8 of them 1.2). Every
rung's drop is recorded in the manifest's `ladder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgedistill.export.fake_quant import scheme_for
from edgedistill.export.job import ExportJob
from edgedistill.export.ladder_schema import LadderInfo, RungInfo
from edgedistill.export.layer_report import export_sensitivity
from edgedistill.export.manifest import Manifest
from edgedistill.export.ptq_ladder import apply_rung
from edgedistill.export.torch2onnx import onnx_parity, torch_to_onnx

Exporter = Callable[[ExportJob], Manifest]


@dataclass
class Climb:
    """Where the ladder stopped: the kept artifact (`fits`), or what each rung measured."""

    manifest: Manifest
    info: LadderInfo | None  # None: plain post-training INT8 fit, no rung was tried
    fits: bool


def _method(job: ExportJob) -> str:
    return (
        f"fake-quant copy of the BN-folded subnet ({scheme_for(job.quant).describe()}); layer by layer in execution "
        "order against the FP32 subnet's output of that layer; the new float weights then go through the target's "
        "own INT8 exporter"
    )


def _row(rung: str, m: Manifest, seconds: float, max_drop: float) -> RungInfo:
    drop = m.accuracy.drop_pts
    assert drop is not None
    return RungInfo(
        rung=rung, drop_pts=drop, agreement=m.accuracy.agreement, seconds=round(seconds, 2), fits=drop <= max_drop
    )


def _sensitive(job: ExportJob, m: Manifest, calib: np.ndarray) -> Manifest:
    """`m` with the sensitivity report of its artifact (the rungs' exports skip it until one is kept)."""
    qdq = None if m.model_file.endswith(".xml") else job.out / m.model_file
    report = export_sensitivity(job, qdq, calib, for_tensorrt=job.recipe.runtime == "tensorrt")
    return m.model_copy(update={"sensitivity": report})


def climb(job: ExportJob, exporter: Exporter, tmp: Path) -> Climb:
    """Plain post-training INT8, then each rung until one fits; the rungs' float models are written to `tmp`."""
    settings = job.quant.ladder
    calib, _ = job.calibration()
    quiet = replace(job, guard=False, fallback="none", sensitivity_images=0)
    plain = exporter(quiet)
    rows = [_row("ptq", plain, 0.0, job.max_drop)]
    if rows[0].fits:
        return Climb(_sensitive(job, plain, calib), None, True)
    scheme = scheme_for(job.quant)
    probe = job.unlabeled(16)
    images = min(settings.images, len(calib))
    for rung in settings.rungs:
        t0 = time.perf_counter()
        result = apply_rung(job.ctx.subnet, scheme, calib, rung, settings)
        seconds = time.perf_counter() - t0
        fp32 = torch_to_onnx(
            result.float_model, job.ctx.resolved.budget.input.shape, tmp / f"{rung}.onnx", job.recipe.opset
        )
        onnx_parity(result.float_model, fp32, probe, atol=1e-3)  # as the QAD export (deep pretrained subnets)
        m = exporter(replace(quiet, fp32=fp32))
        rows.append(_row(rung, m, seconds, job.max_drop))
        if rows[-1].fits:
            info = LadderInfo(method=_method(job), images=images, chosen=rung, rungs=rows)
            kept = _sensitive(replace(job, fp32=fp32), m, calib)
            return Climb(kept.model_copy(update={"ladder": info}), info, True)
    return Climb(plain, LadderInfo(method=_method(job), images=images, chosen=None, rungs=rows), False)
