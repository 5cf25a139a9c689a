"""`--fallback qat`, and the last steps of `--fallback auto`: the PTQ ladder, QAD, then the target's INT8 exporter.

`qat` always fine-tunes. `auto` first climbs the post-training ladder (`ladder_export.py`: plain INT8, bias
correction, AdaRound) and keeps the first rung that fits `accuracy.max_int8_drop_pts`; when none does, it runs the
exporter's own fallback (ONNX Runtime / TensorRT: mixed precision; OpenVINO: NNCF accuracy control) on the subnet's
own weights, and fine-tunes when that still misses, or fits only by keeping more than half of the quantizable
layers in float (an "INT8" model that is mostly float). The fine-tuned float weights are exported to ONNX and quantized
by the same exporter, calibration set and accuracy guard as post-training INT8 (with `auto`, its fallback too), so
the artifact is a stock QDQ ONNX model (or OpenVINO IR). `auto` keeps the mostly-float model when QAD's does not fit
with fewer layers in float.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.export.accuracy import onnx_predictor
from edgedistill.export.fake_quant import scheme_for
from edgedistill.export.job import ExportJob, finish
from edgedistill.export.ladder_export import climb
from edgedistill.export.ladder_schema import LadderInfo
from edgedistill.export.manifest import Manifest, QADInfo
from edgedistill.export.qad import QADResult, quantization_aware_distill
from edgedistill.export.qad_data import qad_data
from edgedistill.export.torch2onnx import onnx_parity, torch_to_onnx
from edgedistill.io import atomic_write
from edgedistill.recipe import QADSettings

Exporter = Callable[[ExportJob], Manifest]

# How each runtime's artifact is made from the QAD weights (recorded in the manifest's qad.method).
EXPORTED_BY = {
    "onnxruntime": "ONNX Runtime quantize_static (QDQ) of the fine-tuned weights",
    "tensorrt": "ONNX Runtime quantize_static in TensorRT's explicit-QDQ layout (zero point 0), fine-tuned weights",
    "openvino": "NNCF post-training INT8 of the fine-tuned weights (NNCF's own torch QAT is not used)",
}


def _predictor(job: ExportJob, manifest: Manifest) -> Callable[[np.ndarray], np.ndarray]:
    path = job.out / manifest.model_file
    if path.suffix == ".xml":
        from edgedistill.export.onnx2openvino import load_openvino

        return load_openvino(path)
    return onnx_predictor(path, fake_quant=job.simulate_qdq)  # as the accuracy check runs it


def fake_quant_parity(model: nn.Module, predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> dict[str, float]:
    """Top-1 agreement (%) and mean absolute logit difference of the artifact vs its fake-quant torch model."""
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = predict(x)
    return {
        "agreement_pct": round(100.0 * float(np.mean(ref.argmax(1) == got.argmax(1))), 3),
        "logit_mae": round(float(np.mean(np.abs(got - ref))), 6),
        "logit_mean_abs": round(float(np.mean(np.abs(ref))), 6),
        "images": float(len(x)),
    }


def _method(job: ExportJob, result: QADResult) -> str:
    scheme = scheme_for(job.quant).describe()
    bn = "BN folded" if result.bn_folded else "BN frozen"
    return (
        f"torch.ao FakeQuantize on {result.layers} Conv/Linear layers and {result.tensors} add/mul tensors "
        f"({scheme}; {bn}); loss KL to the FP32 subnet (+ cached teacher targets); then "
        f"{EXPORTED_BY[job.recipe.runtime]}"
    )


def export_with_qad(job: ExportJob, exporter: Exporter) -> Manifest:
    """Export with `job.fallback` "qat" or "auto" (see the module doc); the accuracy guard applies to the result."""
    settings = job.recipe.qad or QADSettings()
    if job.fallback != "auto" or not job.quant.ladder.rungs:
        return _after_ptq(job, exporter, settings, None)
    with tempfile.TemporaryDirectory(prefix="edgedistill-ladder-") as tmp:  # the rungs' float models
        up = climb(job, exporter, Path(tmp))
    if up.fits:  # plain post-training INT8 or a rung: no mixed precision, no fine-tuning
        return finish(job, up.manifest)
    return _after_ptq(job, exporter, settings, up.info)  # from the subnet's weights (ladder_export.py)


def _after_ptq(job: ExportJob, exporter: Exporter, settings: QADSettings, ladder: LadderInfo | None) -> Manifest:
    """The exporter's own fallback (auto), then QAD when that misses or is mostly float; `job.fp32` the start."""
    plain = exporter(replace(job, guard=False, fallback="none" if job.fallback == "qat" else job.fallback))
    if ladder is not None:
        plain = plain.model_copy(update={"ladder": ladder})
    before = plain.accuracy.drop_pts
    assert before is not None
    plain_fits = before <= job.max_drop
    if job.fallback == "auto" and plain_fits and not mostly_float(plain):
        return finish(job, plain)  # post-training INT8 (or its fallback) fits: no fine-tuning
    trigger = "asked (fallback qat)"
    if job.fallback == "auto" and plain_fits:
        assert plain.fallback is not None
        total = plain.fallback.quantizable_layers
        trigger = f"auto: its fallback fits only with {_in_float(plain)} of {total} layers in float"
    elif job.fallback == "auto":
        how = "its fallback" if plain.fallback is not None else "post-training INT8"
        trigger = f"auto: {how} dropped {before:.2f} pts, more than accuracy.max_int8_drop_pts {job.max_drop}"
    # the QAD export writes over the mixed model's files, which `auto` may keep
    saved = Snapshot.take(job.out) if job.fallback == "auto" and plain_fits else None
    try:
        return _qad(job, exporter, plain, settings, trigger, saved)
    finally:
        if saved is not None:
            saved.discard()


def _qad(
    job: ExportJob, exporter: Exporter, plain: Manifest, settings: QADSettings, trigger: str, saved: Snapshot | None
) -> Manifest:
    before = plain.accuracy.drop_pts
    assert before is not None
    calib, _ = job.calibration()
    ctx = job.ctx
    data = qad_data(ctx.rd, ctx.data, ctx.pre, settings.images, settings.seed, settings.teacher_weight > 0)
    result = quantization_aware_distill(ctx.subnet, data, scheme_for(job.quant), settings, calib)
    val = job.unlabeled()
    with tempfile.TemporaryDirectory(prefix="edgedistill-qad-") as tmp:
        shape = ctx.resolved.budget.input.shape
        fp32 = torch_to_onnx(result.float_model, shape, Path(tmp) / "qad-fp32.onnx", job.recipe.opset)
        onnx_parity(result.float_model, fp32, val[:16], atol=1e-3)  # as the FP32 export (deep pretrained subnets)
        again = job.fallback if saved is not None else "none"  # mixed precision again, on the QAD weights
        manifest = exporter(replace(job, fp32=fp32, guard=False, fallback=again))
    info = QADInfo(
        method=_method(job, result),
        trigger=trigger,
        steps=settings.steps,
        images=len(data.images),
        seed=settings.seed,
        lr=settings.lr,
        batch=settings.batch,
        temperature=settings.temperature,
        teacher_weight=settings.teacher_weight,
        teachers=data.teachers,
        teachers_skipped=data.skipped,
        bn="folded" if result.bn_folded else "frozen",
        layers=result.layers,
        seconds=round(result.seconds, 2),
        drop_before_pts=round(before, 4),
        drop_after_pts=manifest.accuracy.drop_pts,
        agreement_before_pct=plain.accuracy.agreement,
        parity=fake_quant_parity(result.model, _predictor(job, manifest), val),
        history=result.history,
    )
    if saved is not None and not _better(manifest, plain, job.max_drop):
        saved.restore()
        note = (
            f"QAD ({settings.steps} steps) was tried after mixed precision and did not fit with fewer layers in "
            f"float: drop {manifest.accuracy.drop_pts:.2f} pts with {_in_float(manifest)} layers in float; kept the "
            "mixed model"
        )
        return finish(job, plain.model_copy(update={"notes": {**plain.notes, "qad": note}}))
    fallback = manifest.fallback if saved is not None else None
    return finish(job, manifest.model_copy(update={"qad": info, "fallback": fallback, "ladder": plain.ladder}))


@dataclass
class Snapshot:
    """A copy of an artifact folder's files (beside it), put back when the export that replaced them is not kept."""

    folder: Path
    copy: Path

    @classmethod
    def take(cls, folder: Path) -> Snapshot:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-kept-", dir=folder.parent))
        shutil.copytree(folder, tmp / "files")
        return cls(folder, tmp)

    def restore(self) -> None:
        """The folder's files as they were: files added since are removed, the others written back atomically."""
        kept = self.copy / "files"
        for f in [f for f in self.folder.rglob("*") if f.is_file()]:
            if not (kept / f.relative_to(self.folder)).exists():
                f.unlink()
        for f in [f for f in kept.rglob("*") if f.is_file()]:
            dest = self.folder / f.relative_to(kept)
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dest, lambda p, src=f: shutil.copyfile(src, p))  # type: ignore[misc]

    def discard(self) -> None:
        shutil.rmtree(self.copy, ignore_errors=True)


def _in_float(m: Manifest) -> int:
    """Layers an artifact keeps in float (`auto`'s fallback; 0 for an all-INT8 one)."""
    return len(m.fallback.layers_in_fp) if m.fallback else 0


def mostly_float(m: Manifest) -> bool:
    """`auto`'s fallback kept more than half of the quantizable layers in float."""
    return m.fallback is not None and 2 * _in_float(m) > m.fallback.quantizable_layers


def _better(qad: Manifest, plain: Manifest, max_drop: float) -> bool:
    """QAD's artifact fits the budget with fewer layers in float than the mixed model it would replace."""
    drop = qad.accuracy.drop_pts
    return drop is not None and drop <= max_drop and _in_float(qad) < _in_float(plain)
