"""Object-level calls for your own model and training loop: banks, subnets, ONNX export, quantization, timing.

`load_bank`, `save_bank` and `extract` are the `edgedistill.models` functions themselves; `build_bank` takes
`in_channels` and words bad options as a domain error; the others wrap the export and bench modules.
Backends (onnxruntime, openvino, nncf) load on first use.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedistill.api.bench_results import Latency
from edgedistill.api.validate import PathArg, strict_args
from edgedistill.errors import ConfigError
from edgedistill.options import param
from edgedistill.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from edgedistill.models import SlimmableBank
    from edgedistill.recipe import Recipe

# runtime → (fp32 ONNX, recipe, calibration images or None, output folder) → the quantized/converted model file
Quantizer = Callable[[Path, "Recipe", "np.ndarray | None", Path], Path]
QUANTIZERS: Registry[Quantizer] = Registry("runtime")


def build_bank(
    family: str,
    num_classes: int,
    in_channels: int,
    *,
    width_choices: Sequence[float] | None = None,
    **options: Any,
) -> SlimmableBank:
    """A new slimmable student bank of `family` ("resnet_cifar", "mobilenet", "timm"; `edgedistill.models.STUDENTS`).

    Train it with your own loop (`bank.set_config(...)` picks the widths), then `extract` a subnet and `save_bank` it.

    Raises:
        RegistryError: Unknown family. ConfigError: options the family does not take, or values it rejects.
    """
    from edgedistill.models import build_bank as build

    if width_choices is not None:
        options["width_choices"] = tuple(float(w) for w in width_choices)
    try:
        return build(family, num_classes, in_channels, **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"build_bank({family!r}): {e}") from None


def export_onnx(
    model: nn.Module, path: PathArg, input_shape: tuple[int, int, int, int], opset: int = 18, dynamic_batch: bool = True
) -> Path:
    """Export `model` (any torch module taking NCHW float images) to one ONNX file; input "input", output "logits".

    Raises:
        ExportError: The exporter or the ONNX checker failed.
    """
    from edgedistill.export.torch2onnx import torch_to_onnx

    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"{param('input_shape')}: expected (N, C, H, W) of positive sizes, got {input_shape}")
    return torch_to_onnx(model, shape, Path(path), opset=opset, dynamic_batch=dynamic_batch)  # type: ignore[arg-type]


def _recipe(recipe: Recipe | PathArg) -> Recipe:
    from edgedistill.recipe import Recipe, resolve_recipe

    return recipe if isinstance(recipe, Recipe) else resolve_recipe(str(recipe))


def quantize(onnx_path: PathArg, recipe: Recipe | PathArg, calibration: np.ndarray | None, out: PathArg) -> Path:
    """Turn an FP32 ONNX model into the recipe's artifact model in folder `out`; returns the model file.

    Args:
        recipe: A `Recipe` or a recipe YAML (e.g. export/onnxruntime-int8.yaml).
        calibration: Pre-processed float32 images (N, C, H, W) from the target domain; needed for int8 only
            (at least a few hundred for a stable result).

    Raises:
        ConfigError: int8 without calibration images. ExportError / BackendUnavailable: from the backend.
    """
    r = _recipe(recipe)
    if r.precision == "int8" and calibration is None:
        raise ConfigError(f"{param('calibration')}: recipe '{r.name}' is int8 and needs calibration images")
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    return QUANTIZERS.get(r.runtime)(Path(onnx_path), r, calibration, dest)


def _copy_onnx(onnx_path: Path, out: Path) -> Path:
    target = out / "model.onnx"
    if onnx_path.resolve() != target.resolve():
        shutil.copyfile(onnx_path, target)
    return target


@QUANTIZERS.register("onnxruntime")
def _onnxruntime(onnx_path: Path, recipe: Recipe, calibration: np.ndarray | None, out: Path) -> Path:
    from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime

    if recipe.precision != "int8":
        return _copy_onnx(onnx_path, out)
    assert recipe.quantization is not None and calibration is not None
    return quantize_onnxruntime(onnx_path, out / "model.onnx", calibration, recipe.quantization)


@QUANTIZERS.register("tensorrt")
def _tensorrt(onnx_path: Path, recipe: Recipe, calibration: np.ndarray | None, out: Path) -> Path:
    """Q/DQ ONNX for TensorRT (int8) or the FP32 ONNX (fp16/fp32); the engine is built on the device."""
    from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime

    if recipe.precision != "int8":
        return _copy_onnx(onnx_path, out)
    assert recipe.quantization is not None and calibration is not None
    return quantize_onnxruntime(onnx_path, out / "model.onnx", calibration, recipe.quantization, for_tensorrt=True)


@QUANTIZERS.register("openvino")
def _openvino(onnx_path: Path, recipe: Recipe, calibration: np.ndarray | None, out: Path) -> Path:
    from edgedistill.export.onnx2openvino import convert_openvino, quantize_openvino

    if recipe.precision != "int8":
        return convert_openvino(onnx_path, out, fp16=recipe.precision == "fp16")
    assert recipe.quantization is not None and calibration is not None
    return quantize_openvino(onnx_path, out, calibration, recipe.quantization, recipe.name)


@strict_args
def time_artifact(
    artifact: PathArg,
    *,
    threads: int = 1,
    runs: int = 200,
    min_time: float = 1.0,
    warmup: int = 20,
    warmup_time: float = 0.0,
    batch: int = 1,
    input: str = "random",
    device: str = "cpu",
    timeout_s: float = 600,
) -> Latency:
    """Time an artifact folder (with its manifest.json) in a fresh process with the torch-free runner.

    `input`: "random" or a .npy file of inputs. Nothing is judged against a budget (see `bench` for that).

    Raises:
        BenchError: The artifact is missing or damaged, or the runner failed.
    """
    from edgedistill.bench.launch import run_isolated  # torch-free, as the runner it starts

    for name, value, least in (("threads", threads, 1), ("runs", runs, 1), ("batch", batch, 1), ("warmup", warmup, 0)):
        if value < least:
            raise ConfigError(f"{param(name)}: expected at least {least}, got {value}")
    args = [str(artifact), "--threads", str(threads), "--batch", str(batch), "--runs", str(runs)]
    args += ["--warmup", str(warmup), "--min-time", str(min_time), "--warmup-time", str(warmup_time)]
    args += ["--input", str(input), "--device", device]
    return Latency.from_dict(run_isolated("edgedistill.bench.runner", args, timeout_s=timeout_s, threads=threads))
