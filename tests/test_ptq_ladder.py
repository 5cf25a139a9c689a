"""The post-training ladder (`--fallback auto` before mixed precision and QAD): each rung on a small net broken on
purpose in the way it is known to fix, checked against FP32 through ONNX Runtime's own quantizer; and the climb on
the session run: the first rung that fits is kept and named in the manifest, else the closest rung is the start of
mixed precision."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from conftest import FIXTURE_MAX_DROP, context_with_reference
from torch import nn

from edgedistill.errors import ConfigError
from edgedistill.export.accuracy import onnx_predictor
from edgedistill.export.fake_quant import scheme_for
from edgedistill.export.job import ExportJob, RunContext
from edgedistill.export.manifest import Manifest, read_manifest, write_manifest
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.export.ptq_ladder import RUNGS, apply_rung
from edgedistill.export.qad_export import export_with_qad
from edgedistill.export.torch2onnx import torch_to_onnx
from edgedistill.pipeline.export import EXPORTERS
from edgedistill.recipe import Ladder, Quantization, Recipe, Rung, load_recipe, validate_as

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml"
QUANT = Quantization(reduce_range=True)  # the shipped ONNX Runtime recipe's scheme: 7-bit per-channel weights


class TwoConv(nn.Module):
    """conv → ReLU → 1×1 conv → mean → linear: small enough to check every rung exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pw(torch.relu(self.conv(x))).mean((2, 3)))


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 8, 8)).astype(np.float32)


def _ort_int8(model: nn.Module, calib: np.ndarray, tmp: Path, name: str) -> Callable[[np.ndarray], np.ndarray]:
    fp32 = torch_to_onnx(model, (1, 3, 8, 8), tmp / f"{name}-fp32.onnx")
    return onnx_predictor(quantize_onnxruntime(fp32, tmp / f"{name}-int8.onnx", calib, QUANT))


def _skewed_net() -> TwoConv:
    """The 1×1 conv's weights sit 0.45 of a rounding step above the grid: nearest rounding drops every one of them
    by the same fraction, and on ReLU inputs (all ≥ 0) that shifts each output channel's mean."""
    torch.manual_seed(0)
    net = TwoConv().eval()
    with torch.no_grad():
        step = 0.05 / 64  # per-channel scale of 7-bit weights whose largest is 0.05
        k = torch.randint(1, 40, net.pw.weight.shape).float()
        net.pw.weight.copy_((k + 0.45) * step)
        net.pw.weight[:, 0] = 0.05  # each channel's largest weight fixes the scale
        net.conv.bias.fill_(0.5)  # mostly positive ReLU outputs: a large mean for the rounding to shift
    return net


def test_bias_correction_removes_a_shifted_output_mean(tmp_path: Path) -> None:
    net = _skewed_net()
    calib, test = _images(300, 0), _images(200, 1)
    with torch.no_grad():
        ref = net(torch.from_numpy(test)).numpy()
    r = apply_rung(net, scheme_for(QUANT), calib, "bias_correction", Ladder(images=128))
    before = _ort_int8(net, calib, tmp_path, "plain")(test) - ref
    after = _ort_int8(r.float_model, calib, tmp_path, "bc")(test) - ref
    # the shift is systematic: its mean over images is most of the error before, and gone after
    assert np.abs(before.mean(0)).max() > 5 * np.abs(after.mean(0)).max(), (before.mean(0), after.mean(0))
    assert np.square(after).mean() < 0.5 * np.square(before).mean()
    assert r.layers == 3 and r.seconds > 0


def _gray(n: int, seed: int) -> np.ndarray:
    """Zero-mean images with R = G = B (gray photos, upsampled digits)."""
    return np.repeat(np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32), 3, axis=1)


def test_adaround_fixes_the_rounding_of_filters_over_gray_inputs(tmp_path: Path) -> None:
    """On gray inputs a first conv computes the sum of its R, G and B weights. When each of them sits 0.3-0.45 of a
    step above the grid, rounding to nearest lowers all three and their sum by ~1.1 steps; bias correction cannot
    remove that (the inputs are zero-mean), AdaRound rounds some weights up instead. Its weights stay on the 7-bit
    grid of the exporter's own min-max scale, and ONNX Runtime's quantizer reproduces them (its INT8 model computes
    what the rung's fake-quant model computes)."""
    torch.manual_seed(1)
    net = TwoConv().eval()
    with torch.no_grad():
        step = 0.2 / 64
        k = torch.randint(-40, 40, net.conv.weight.shape).float()
        net.conv.weight.copy_((k + torch.empty(k.shape).uniform_(0.3, 0.45)) * step)
        net.conv.weight[:, 0, 0, 0] = 0.2  # each channel's largest weight fixes the scale
    calib, test = _gray(300, 2), _gray(200, 3)
    x = torch.from_numpy(test)
    with torch.no_grad():
        ref = net(x)
    errors, results = {}, {}
    for rung in ("bias_correction", "adaround"):
        results[rung] = r = apply_rung(net, scheme_for(QUANT), calib, rung, Ladder(images=128))
        with torch.no_grad():
            errors[rung] = float((r.quantized(x) - ref).pow(2).mean())
    assert errors["adaround"] < 0.6 * errors["bias_correction"], errors
    r = results["adaround"]
    w0, w = net.conv.weight.detach(), r.float_model.get_submodule("conv").weight.detach()
    steps = w / (w0.flatten(1).abs().amax(1).view(-1, 1, 1, 1) / 64)
    torch.testing.assert_close(steps, steps.round(), atol=1e-3, rtol=0)  # on the grid
    torch.testing.assert_close(w.flatten(1).abs().amax(1), w0.flatten(1).abs().amax(1))  # same exporter scale
    assert (steps.round() != (w0 / (w0.flatten(1).abs().amax(1).view(-1, 1, 1, 1) / 64)).round()).any()
    with torch.no_grad():
        fake = r.quantized(x).numpy()
    got = _ort_int8(r.float_model, calib, tmp_path, "ada")(test)
    assert np.abs(got - fake).max() < 0.05 * np.abs(fake).max()


def test_ladder_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rungs"):
        validate_as(Quantization, {"ladder": {"rungs": ["adaround", "adaround"]}}, "recipe.yaml: quantization")
    with pytest.raises(ConfigError, match="rungs"):
        validate_as(Quantization, {"ladder": {"rungs": ["cle"]}}, "recipe.yaml: quantization")
    assert Quantization().ladder.rungs == ["bias_correction", "adaround"]
    assert RUNGS.names() == sorted(get_args(Rung))  # every rung a recipe may name has an implementation


@pytest.fixture(scope="module")
def ctx_ref(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunContext, object]:
    return context_with_reference(trained_run, tmp_path_factory, "ladder")


def _job(ctx_ref: tuple[RunContext, object], iterations: int = 20) -> ExportJob:
    ctx, ref = ctx_ref
    base = load_recipe(RECIPE)
    assert base.quantization is not None
    ladder = Ladder(images=64, adaround_iterations=iterations)
    recipe: Recipe = base.model_copy(update={"quantization": base.quantization.model_copy(update={"ladder": ladder})})
    fp32 = ctx.rd.export_dir("onnxruntime-fp32") / "model.onnx"
    return ExportJob(ctx, recipe, fp32, ref, fallback="auto")  # type: ignore[arg-type]


def _claiming(drops: dict[str, float], seen: list[ExportJob]) -> Callable[[ExportJob], Manifest]:
    """The ONNX Runtime exporter, except that the exports of the float models named in `drops` (`model` is the
    subnet's own) claim those drops."""
    real = EXPORTERS.get("onnxruntime-int8")

    def export(j: ExportJob) -> Manifest:
        seen.append(j)
        m = real(j)
        claim = drops.get(j.fp32.stem) if j.fallback == "none" else None
        if claim is not None:
            m = m.model_copy(update={"accuracy": m.accuracy.model_copy(update={"drop_pts": claim})})
            write_manifest(j.out, m)
        return m

    return export


def test_auto_keeps_the_first_rung_that_fits(ctx_ref: tuple[RunContext, object]) -> None:
    seen: list[ExportJob] = []
    j = _job(ctx_ref)
    m = export_with_qad(j, _claiming({"model": 50.0}, seen))
    assert m.ladder is not None and m.ladder.chosen == "bias_correction"
    assert [(r.rung, r.fits) for r in m.ladder.rungs] == [("ptq", False), ("bias_correction", True)]
    assert m.ladder.rungs[0].drop_pts == 50.0 and m.ladder.rungs[1].drop_pts <= FIXTURE_MAX_DROP
    assert m.fallback is None and m.qad is None and m.sensitivity is not None  # the kept artifact's own report
    assert [s.fp32.stem for s in seen] == ["model", "bias_correction"]
    assert read_manifest(j.out).ladder == m.ladder


def test_auto_goes_on_from_the_subnets_own_weights_when_no_rung_fits(ctx_ref: tuple[RunContext, object]) -> None:
    """A rung's corrections compensate quantized layers: mixed precision keeps layers in float, so it starts from the
    subnet's own weights, and the manifest still lists what every rung measured."""
    seen: list[ExportJob] = []
    j = _job(ctx_ref, iterations=5)
    m = export_with_qad(j, _claiming({"model": 50.0, "bias_correction": 30.0, "adaround": 40.0}, seen))
    assert m.ladder is not None and [r.rung for r in m.ladder.rungs] == ["ptq", "bias_correction", "adaround"]
    assert m.ladder.chosen is None and [r.drop_pts for r in m.ladder.rungs] == [50.0, 30.0, 40.0]
    assert [(s.fp32.stem, s.fallback) for s in seen] == [
        ("model", "none"), ("bias_correction", "none"), ("adaround", "none"), ("model", "auto")
    ]  # fmt: skip
    assert m.qad is None and m.accuracy.drop_pts is not None and m.accuracy.drop_pts <= FIXTURE_MAX_DROP
    assert read_manifest(j.out).ladder == m.ladder
