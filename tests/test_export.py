"""ONNX export, parity, ONNX Runtime INT8 quantization, accuracy comparison and the artifact manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgedistill.errors import ExportError
from edgedistill.export.accuracy import Accuracy, compare_accuracy, onnx_accuracy
from edgedistill.export.manifest import (
    AccuracyInfo,
    CalibrationInfo,
    Cost,
    InputInfo,
    Manifest,
    Preprocess,
    Source,
    read_manifest,
    write_manifest,
)
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.export.torch2onnx import onnx_parity, torch_to_onnx
from edgedistill.export.versions import runtime_versions
from edgedistill.io import sha256_file
from edgedistill.recipe import Calibration, Quantization

SHAPE = (1, 3, 32, 32)
CLASSES = 10


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, CLASSES),
    )


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 smooth class prototypes (fixed) plus per-image noise: learnable, but not trivially separable."""
    protos = np.random.default_rng(0).standard_normal((CLASSES, 3, 8, 8)).astype(np.float32)
    protos = protos.repeat(4, axis=2).repeat(4, axis=3)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    # Weak signal (0.4) on unit noise: FP32 reaches ~88%, so some images sit near a decision boundary
    # and INT8 agreement is a real test rather than a given.
    x = 0.4 * protos[y] + rng.standard_normal((n, *SHAPE[1:]), dtype=np.float32)
    return x.astype(np.float32), y


pytestmark = pytest.mark.usefixtures("one_thread")


def train_tiny() -> nn.Module:
    """`tiny_net` trained 100 steps on the synthetic task (~1 s), in eval mode."""
    torch.manual_seed(0)
    model = tiny_net()
    x, y = synthetic(2048, seed=1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(100):
        idx = torch.arange(step * 32, step * 32 + 32) % len(xt)
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return train_tiny()


@pytest.fixture(scope="module")
def fp32_onnx(trained: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torch_to_onnx(trained, SHAPE, tmp_path_factory.mktemp("fp32") / "model.onnx")


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return synthetic(128, seed=2)[0]


@pytest.fixture(scope="module")
def int8_onnx(fp32_onnx: Path, calibration: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize_onnxruntime(fp32_onnx, tmp_path_factory.mktemp("int8") / "model.onnx", calibration, Quantization())


def initializers(path: Path) -> tuple[onnx.GraphProto, dict[str, np.ndarray]]:
    graph = onnx.load(str(path)).graph
    return graph, {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def test_export_names_and_dynamic_batch(fp32_onnx: Path) -> None:
    graph = onnx.load(str(fp32_onnx)).graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert not list(fp32_onnx.parent.glob(".*.tmp"))  # atomic write left no temp file


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_parity(trained: nn.Module, fp32_onnx: Path, batch: int) -> None:
    x = np.random.default_rng(batch).standard_normal((batch, *SHAPE[1:]), dtype=np.float32)
    assert onnx_parity(trained, fp32_onnx, x) < 1e-4


def test_parity_failure_is_export_error(trained: nn.Module, fp32_onnx: Path) -> None:
    other = tiny_net().eval()
    other.load_state_dict(trained.state_dict())
    with torch.no_grad():
        other[-1].bias += 1.0
    with pytest.raises(ExportError, match="differs from torch"):
        onnx_parity(other, fp32_onnx, np.zeros(SHAPE, np.float32))


def test_fixed_batch_export_and_train_mode_restored(tmp_path: Path) -> None:
    model = tiny_net().train()
    path = torch_to_onnx(model, (2, 3, 32, 32), tmp_path / "fixed.onnx", dynamic_batch=False)
    assert model.training
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_int8_graph_is_qdq_per_channel_uint8(int8_onnx: Path, trained: nn.Module) -> None:
    graph, inits = initializers(int8_onnx)
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    convs = [m for m in trained.modules() if isinstance(m, nn.Conv2d)]
    weight_dq = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4
    ]
    assert len(weight_dq) == len(convs)
    for node in weight_dq:
        weight, scale = inits[node.input[0]], inits[node.input[1]]
        assert weight.dtype == np.int8
        assert scale.shape == (weight.shape[0],)  # one scale per output channel
    act_zp = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(zp.dtype == np.uint8 for zp in act_zp)


def test_int8_symmetric_activations_have_zero_points_0(
    fp32_onnx: Path, calibration: np.ndarray, tmp_path: Path
) -> None:
    quant = Quantization(activations="int8", symmetric_activations=True, calibration=Calibration(method="percentile"))
    path = quantize_onnxruntime(fp32_onnx, tmp_path / "sym.onnx", calibration, quant)
    graph, inits = initializers(path)
    act_zp = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(zp.dtype == np.int8 for zp in act_zp)
    all_zp = [inits[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert not any(zp.any() for zp in all_zp)  # weights, activations and (int32) biases all centred on 0


def test_int8_agrees_with_fp32(fp32_onnx: Path, int8_onnx: Path) -> None:
    x, y = synthetic(512, seed=3)
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, len(x), 128)]
    fp32, int8 = onnx_accuracy(fp32_onnx, batches, threads=1), onnx_accuracy(int8_onnx, batches, threads=1)
    assert fp32.n == int8.n == 512
    assert fp32.top1 > 50  # the task was learnt, so agreement means something
    cmp = compare_accuracy(fp32, int8)
    assert cmp["agreement"] >= 95.0
    assert cmp["drop_pts"] == pytest.approx(fp32.top1 - int8.top1)


def test_compare_accuracy_counts() -> None:
    a = Accuracy(top1=75.0, n=4, predictions=np.array([0, 1, 2, 3]))
    b = Accuracy(top1=50.0, n=4, predictions=np.array([0, 1, 2, 0]))
    assert compare_accuracy(a, b) == {"drop_pts": 25.0, "agreement": 75.0}
    with pytest.raises(ExportError, match="different image counts"):
        compare_accuracy(a, Accuracy(top1=0.0, n=1, predictions=np.array([0])))


def test_bad_calibration_is_export_error(fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="NCHW"):
        quantize_onnxruntime(fp32_onnx, tmp_path / "q.onnx", np.zeros((3, 32, 32), np.float32), Quantization())


def make_manifest(model_file: str = "model.onnx", precision: str = "int8") -> Manifest:
    return Manifest(
        name="tiny-onnxruntime-int8",
        runtime="onnxruntime",
        precision=precision,
        model_file=model_file,
        input=InputInfo(shape=[-1, 3, 32, 32]),
        preprocess=Preprocess(mean=[0.5] * 3, std=[0.25] * 3, channels=3, height=32, width=32),
        class_names=[str(i) for i in range(CLASSES)],
        source=Source(family="tiny", config=[1.0, 0.5], channels=[8, 16], subnet_sha256="0" * 64),
        opset=18,
        versions=runtime_versions(),
        calibration=CalibrationInfo(count=128, sha256="1" * 64, method="minmax", source="synthetic"),
        accuracy=AccuracyInfo(split="test", n=512, fp32=90.0, quantized=89.5, drop_pts=0.5, agreement=98.0),
        cost=Cost(macs=123_456, params=4_321),
        budget="demo-cpu",
        created="2025-01-01T00:00:00+00:00",
    )


@pytest.fixture()
def artifact(int8_onnx: Path, tmp_path: Path) -> Path:
    art = tmp_path / "onnxruntime-int8"
    art.mkdir()
    (art / "model.onnx").write_bytes(int8_onnx.read_bytes())
    (art / "build_engine.sh").write_text("#!/bin/sh\n")
    manifest = make_manifest()
    manifest.files = {"build_engine.sh": ""}
    write_manifest(art, manifest)
    return art


def test_manifest_round_trip(artifact: Path) -> None:
    loaded = read_manifest(artifact)
    assert loaded.files == {
        "build_engine.sh": sha256_file(artifact / "build_engine.sh"),
        "model.onnx": sha256_file(artifact / "model.onnx"),
    }
    assert loaded.model_copy(update={"files": {}}) == make_manifest()
    raw = json.loads((artifact / "manifest.json").read_text())
    assert raw["input"]["shape"] == [-1, 3, 32, 32] and raw["format_version"] == 1


def test_tampered_model_is_rejected(artifact: Path) -> None:
    with open(artifact / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match=r"model\.onnx: sha256 mismatch"):
        read_manifest(artifact)
    read_manifest(artifact, verify=False)  # still readable when asked not to verify


def test_missing_manifest_dir_and_file(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="artifact directory not found"):
        read_manifest(tmp_path / "nope")
    (artifact / "build_engine.sh").unlink()
    with pytest.raises(ExportError, match="build_engine.sh: listed in the manifest but missing"):
        read_manifest(artifact)
    (artifact / "manifest.json").unlink()
    with pytest.raises(ExportError, match="manifest not found"):
        read_manifest(artifact)


def test_manifest_validation() -> None:
    with pytest.raises(ValueError, match="calibration"):
        Manifest.model_validate({**make_manifest().model_dump(), "calibration": None})
    with pytest.raises(ValueError, match="relative path"):
        make_manifest(model_file="../model.onnx")
    with pytest.raises(ValueError, match="unknown|extra"):
        Manifest.model_validate({**make_manifest().model_dump(), "surprise": 1})


def test_invalid_manifest_names_the_field(artifact: Path) -> None:
    raw = json.loads((artifact / "manifest.json").read_text())
    raw["input"]["layout"] = "NHWC"
    (artifact / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ExportError, match=r"manifest\.json: input\.layout"):
        read_manifest(artifact)


def test_runtime_versions_reads_metadata_only() -> None:
    before = "openvino" in sys.modules
    versions = runtime_versions()
    assert {"python", "numpy", "torch", "onnx", "onnxruntime", "edgedistill"} <= set(versions)
    assert ("openvino" in sys.modules) == before
