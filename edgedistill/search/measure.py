"""Time a torch module as the target runtime runs it: export, quantize as the exporter does, time in its own process.

Used for every block of the latency lookup table and for the direct measurement of shortlisted configs (whose INT8
artifacts are also run on the search's unlabeled images, to compare them after quantization).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from edgedistill.bench.launch import run_isolated
from edgedistill.export.torch2onnx import torch_to_onnx
from edgedistill.io import sha256_file
from edgedistill.recipe import Recipe
from edgedistill.registry import Registry

STATS = ("p50", "p90", "p99", "mean")


@dataclass(frozen=True)
class Timing:
    """How each measurement is taken (forwarded to the torch-free bench runner)."""

    threads: int = 1
    batch: int = 1
    runs: int = 200
    warmup: int = 20
    min_time_s: float = 0.3

    def args(self) -> list[str]:
        return [
            *("--threads", str(self.threads), "--batch", str(self.batch), "--runs", str(self.runs)),
            *("--warmup", str(self.warmup), "--min-time", str(self.min_time_s)),
        ]


def _ort_artifact(module: nn.Module, shape: tuple[int, ...], recipe: Recipe, calib: np.ndarray, out: Path) -> None:
    from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime

    fp32 = out / ("model.onnx" if recipe.quantization is None else "fp32.onnx")
    torch_to_onnx(module.eval(), shape, fp32, opset=recipe.opset, dynamic_batch=recipe.dynamic_batch)  # type: ignore[arg-type]
    if recipe.quantization is not None:
        quantize_onnxruntime(fp32, out / "model.onnx", calib, recipe.quantization)


Builder = Callable[[nn.Module, tuple[int, ...], Recipe, np.ndarray, Path], None]
ARTIFACT_BUILDERS: Registry[Builder] = Registry("profiling runtime")
ARTIFACT_BUILDERS.register("onnxruntime")(_ort_artifact)


def time_module(
    module: nn.Module,
    input_shape: tuple[int, ...],
    recipe: Recipe,
    timing: Timing,
    calibration: np.ndarray | None = None,
) -> dict[str, float]:
    """Latency statistics (ms) of `module` exported with `recipe` and timed by the bench runner in a fresh process.

    Args:
        module: A plain torch module (a block or a whole subnet), in eval mode.
        input_shape: Its input, NCHW (batch 1 for export; `timing.batch` is what is timed).
        recipe: Export recipe: runtime, opset, and the INT8 quantization settings the exporter uses.
        timing: Threads, batch, runs.
        calibration: INT8 calibration inputs of the module's input shape (default: 32 seeded normal samples, enough
            for timing: latency does not depend on the quantization scales).

    Raises:
        RegistryError: A runtime that cannot be profiled here.
        BenchError: The runner failed.
    """
    return time_and_run(module, input_shape, recipe, timing, calibration)[0]


def time_and_run(
    module: nn.Module,
    input_shape: tuple[int, ...],
    recipe: Recipe,
    timing: Timing,
    calibration: np.ndarray | None = None,
    images: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray | None]:
    """`time_module`, and the artifact's outputs on `images` (None: not run), from one build of the artifact.

    The outputs come from ONNX Runtime CPU with its integer kernels, as the bench runs the artifact (so an INT8
    candidate is scored as it will compute, with real calibration images).
    """
    build = ARTIFACT_BUILDERS.get(recipe.runtime)
    if calibration is None:
        calibration = np.random.default_rng(0).standard_normal((32, *input_shape[1:]), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgedistill-profile-") as tmp:
        art = Path(tmp)
        build(module, input_shape, recipe, calibration, art)
        manifest = {
            "runtime": recipe.runtime,
            "precision": recipe.precision,
            "model_file": "model.onnx",
            "files": {"model.onnx": sha256_file(art / "model.onnx")},
            "input": {"shape": [-1 if recipe.dynamic_batch else 1, *input_shape[1:]]},
        }
        (art / "manifest.json").write_text(json.dumps(manifest))
        record = run_isolated("edgedistill.bench.runner", [str(art), *timing.args()])
        outputs = None if images is None else _outputs(art / "model.onnx", images)
    return {k: float(record["stats"][k]) for k in STATS}, outputs


def _outputs(model: Path, images: np.ndarray, batch: int = 250) -> np.ndarray:
    from edgedistill.export.accuracy import onnx_predictor

    predict = onnx_predictor(model)
    return np.concatenate([predict(images[i : i + batch]) for i in range(0, len(images), batch)])
