"""Inference runtimes the device runner can time, by manifest `runtime` name (torch-free).

Each entry is a class built from (model file, threads) with a `run(x)` method. ONNX Runtime is
the only one so far; OpenVINO (`openvino.Core().compile_model`) and TensorRT (engine deserialize
+ execution context) go here as further `@RUNTIMES.register(...)` classes, importing their
package inside `__init__`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgedistill.errors import BackendUnavailable
from edgedistill.registry import Registry


class Model(Protocol):
    """A loaded model that runs one batch."""

    def run(self, x: np.ndarray) -> Any:
        """Run one inference on `x` (NCHW float32) and return the runtime's raw output."""
        ...


class ModelFactory(Protocol):
    def __call__(self, model_path: Path, threads: int) -> Model: ...


RUNTIMES: Registry[ModelFactory] = Registry("runtime")


def ort_session(model_path: str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads and sequential execution.

    Inter-op parallelism is off so that `threads` is the whole thread budget, as on a device.

    Raises:
        BackendUnavailable: onnxruntime is not installed.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable.for_extra("onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; warnings about unused initializers are noise here
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])


@RUNTIMES.register("onnxruntime")
class OnnxRuntimeModel:
    """ONNX Runtime on the CPU execution provider (FP32 and QDQ INT8 models)."""

    def __init__(self, model_path: Path, threads: int) -> None:
        self.session = ort_session(model_path, threads)
        self.input_name: str = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> Any:
        return self.session.run(None, {self.input_name: x})
