"""Every export target on the small real run: OpenVINO IR (FP32/FP16/INT8/accuracy-controlled), TensorRT
explicit-QDQ ONNX + build script (+ engine where TensorRT is importable), the accuracy guard, `--fallback auto`,
and one-line errors for incompatible requests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_MAX_DROP, context_with_reference

from edgedistill.errors import ConfigError, ExportError
from edgedistill.export.job import RunContext
from edgedistill.export.manifest import CalibrationInfo, Manifest, read_manifest
from edgedistill.pipeline.export import EXPORTERS, ExportJob, export_run
from edgedistill.run import find_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "edgedistill" / "resources" / "recipes"


@pytest.fixture(scope="module")
def ctx_ref(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunContext, object]:
    return context_with_reference(trained_run, tmp_path_factory, "targets")


@pytest.fixture(scope="module")
def job(ctx_ref: tuple[RunContext, object]) -> Callable[..., ExportJob]:
    ctx, ref = ctx_ref

    def make(recipe: str, cls: type[ExportJob] = ExportJob, **kw: object) -> ExportJob:
        r = find_recipe(*recipe.split("-")[:2]) if recipe.count("-") == 1 else None
        if r is None:
            from edgedistill.recipe import load_recipe

            r = load_recipe(RECIPES / f"{recipe}.yaml")
        fp32 = ctx.rd.export_dir("onnxruntime-fp32") / "model.onnx"
        return cls(ctx, r, fp32, ref, **kw)  # type: ignore[arg-type]

    return make


def _export(make: Callable[..., ExportJob], recipe: str, **kw: object) -> tuple[Manifest, Path]:
    j = make(recipe, **kw)
    return EXPORTERS.get(j.recipe.target)(j), j.out


@pytest.mark.parametrize("recipe", ["openvino-fp32", "openvino-fp16", "openvino-int8", "openvino-int8-ac"])
def test_openvino_exports_load_and_match_manifest(job: Callable[..., ExportJob], recipe: str) -> None:
    pytest.importorskip("openvino")
    from edgedistill.export.accuracy import model_accuracy
    from edgedistill.export.onnx2openvino import load_openvino

    m, out = _export(job, recipe)
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    loaded = read_manifest(out)  # verifies both sha256s
    assert loaded.model_file == "model.xml" and {"model.xml", "model.bin"} <= set(loaded.files)
    a = loaded.accuracy
    assert a.artifact is not None and a.drop_pts is not None and a.drop_pts <= FIXTURE_MAX_DROP, a
    if recipe == "openvino-fp32":
        assert abs(a.drop_pts) <= 0.05 and a.agreement is not None and a.agreement >= 99.9
    if recipe.startswith("openvino-int8"):
        assert a.quantized == a.artifact and loaded.calibration is not None and loaded.calibration.count == 300
        sens = loaded.sensitivity  # measured on an ONNX Runtime QDQ proxy, and labelled so
        assert sens is not None and sens.method.startswith("proxy") and sens.layers and sens.top_k == 8
    else:
        assert loaded.sensitivity is None
    rerun = model_accuracy(load_openvino(out / "model.xml"), job("openvino-fp32").ctx.test_batches(), recipe)
    assert abs(rerun.top1 - a.artifact) < 1e-9


def test_openvino_entropy_is_rejected_in_one_line(job: Callable[..., ExportJob]) -> None:
    pytest.importorskip("nncf")
    j = job("openvino-int8")
    q = j.quant.model_copy(update={"calibration": j.quant.calibration.model_copy(update={"method": "entropy"})})
    j.recipe = j.recipe.model_copy(update={"quantization": q})
    with pytest.raises(ConfigError, match=r"quantization\.calibration\.method: entropy is not available for openvino"):
        EXPORTERS.get("openvino-int8")(j)


@pytest.fixture(scope="module")
def trt_int8(job: Callable[..., ExportJob]) -> tuple[Manifest, Path]:
    return _export(job, "tensorrt-int8")


def test_tensorrt_qdq_layout(trt_int8: tuple[Manifest, Path]) -> None:
    import onnx
    from onnx import numpy_helper

    m, out = trt_int8
    g = onnx.load(str(out / "model.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:  # symmetric int8 everywhere: zero point 0
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    weighted = [n for n in g.node if n.op_type in ("Conv", "Gemm")]
    assert weighted
    for n in weighted:
        for inp in n.input[:2]:  # activation and weight both come through Q→DQ
            dq = producer.get(inp)
            assert dq is not None and dq.op_type == "DequantizeLinear", (n.name, inp)
            assert producer[dq.input[0]].op_type == "QuantizeLinear"
        w_scale = inits[producer[n.input[1]].input[1]]
        assert w_scale.size > 1, f"{n.name}: weights should be per output channel"
    a = m.accuracy
    assert a.quantized is not None and a.drop_pts is not None and a.drop_pts <= FIXTURE_MAX_DROP, a
    assert m.engine is not None and m.engine.build_script == "build_engine.sh"
    sens = m.sensitivity  # the artifact's own explicit-QDQ model: every Conv/Gemm, and nodes reading DQ'd tensors
    assert sens is not None and "TensorRT" in sens.method
    assert {n.name for n in weighted} <= {r.node for r in sens.layers}


def test_build_engine_script(trt_int8: tuple[Manifest, Path], tmp_path: Path) -> None:
    m, out = trt_int8
    script = out / "build_engine.sh"
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert os.access(script, os.X_OK)
    for flag in ("--onnx=model.onnx", "--saveEngine=model.engine", "--timingCacheFile=timing.cache", "--stronglyTyped"):
        assert flag in text
    assert "--minShapes=input:1x1x28x28" in text and 'WORKSPACE_MB="${WORKSPACE_MB:-1024}"' in text
    assert "build_engine.sh" in (out / "README.md").read_text()
    # Run it against fake trtexecs: TensorRT 10 gets --stronglyTyped, 8.6 gets --int8 --fp16.
    for banner, expect in (("TensorRT v100300", "--stronglyTyped"), ("TensorRT v8602", "--int8 --fp16")):
        fake = tmp_path / "trtexec"
        fake.write_text(
            f'#!/usr/bin/env bash\nif [[ "$1" == --help ]]; then echo "&&&& RUNNING {banner}"; '
            'else echo "ARGS $*"; fi\n'
        )
        fake.chmod(0o755)
        r = subprocess.run([str(script)], capture_output=True, text=True, env={**os.environ, "TRTEXEC": str(fake)})
        assert r.returncode == 0, r.stderr
        assert expect in r.stdout and "--memPoolSize=workspace:1024" in r.stdout, r.stdout


def test_engine_recorded_or_built(trt_int8: tuple[Manifest, Path]) -> None:
    m, out = trt_int8
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert m.engine is not None and m.engine.file is None and "not importable" in (m.engine.reason or "")
        return
    assert m.engine is not None and m.engine.file == "model.engine" and (out / "model.engine").stat().st_size > 0


def test_tensorrt_engine_build_api(trt_int8: tuple[Manifest, Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from edgedistill.export.onnx2tensorrt import build_engine
    from edgedistill.recipe import TensorRTBuild

    _, out = trt_int8
    engine = build_engine(
        out / "model.onnx", tmp_path / "e.engine", "int8", TensorRTBuild(workspace_mb=256), [-1, 1, 28, 28], 1
    )
    assert engine.stat().st_size > 0 and (tmp_path / "timing.cache").is_file()


def test_tensorrt_fp16_ships_fp32_onnx_and_fp16_script(job: Callable[..., ExportJob]) -> None:
    m, out = _export(job, "tensorrt-fp16")
    assert "PRECISION_FLAGS=(--fp16)" in (out / "build_engine.sh").read_text()
    assert m.accuracy.drop_pts == 0.0 and read_manifest(out).engine is not None


class ConstantCalibration(ExportJob):
    """A deliberately bad calibration set: 10 identical black images."""

    def calibration(self) -> tuple[np.ndarray, CalibrationInfo]:
        shape = self.ctx.resolved.budget.input.shape[1:]
        black = self.ctx.pre(__import__("torch").zeros((10, *shape))).numpy().astype(np.float32)
        return black, CalibrationInfo(count=10, sha256="0" * 64, method="minmax", source="constant (test)")


def test_guard_catches_bad_calibration_and_fallback_never_ships_a_float_model(job: Callable[..., ExportJob]) -> None:
    """Black calibration images break every activation range: no partly-float model fits the drop limit, and the
    all-float one that does is no INT8 model, so `--fallback auto` says so instead of shipping it as INT8."""
    guard = rf"pts below FP32 .*max_int8_drop_pts {FIXTURE_MAX_DROP}; most sensitive layers: .*; try fallback=.auto. \("
    with pytest.raises(ExportError, match=guard):
        _export(job, "onnxruntime-int8", cls=ConstantCalibration)
    with pytest.raises(ExportError, match="leaves nothing in INT8") as e:
        _export(job, "onnxruntime-int8", cls=ConstantCalibration, fallback="auto")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"runtime": "torch", "precision": "int8"}, "runtime 'torch' has no int8 support"),
        ({"runtime": "openvno"}, "did you mean 'openvino'"),
        ({"runtime": "onnxruntime", "precision": "fp16"}, "runtime 'onnxruntime' has no fp16 support"),
        ({"runtime": "openvino", "precision": "fp16", "fallback": "auto"}, "fallback=.auto. needs an int8 target"),
    ],
)
def test_incompatible_requests_are_one_line(ctx_ref: tuple[RunContext, object], kw: dict, message: str) -> None:
    ctx, _ = ctx_ref
    with pytest.raises(ConfigError, match=message) as e:
        export_run(ctx.rd.root, **kw)
    assert "\n" not in str(e.value)


def test_cli_rejects_torch_int8(trained_run: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edgedistill", "export", "--run", str(trained_run), "--target", "torch", "--int8"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 2 and "has no int8 support" in r.stderr and "Traceback" not in r.stderr
