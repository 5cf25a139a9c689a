"""Inference runtimes the benchmark runners can time, by name (torch-free at import).

Each entry is a class built from (model file, `RuntimeOptions`) with a `run(x)` method, a
`details` dict (providers, device, precision hint) that goes into the result JSON and, where the
bare-loop timing (`bench/bare.py`) supports it, a `bare(x)` call without the wrapper. Every backend
package is imported inside `__init__`, so importing this module costs nothing and the device
runner imports only the runtime it times. What else is known about each runtime (precisions,
packages, exporters) is in `edgedistill/runtimes.py`.

- `onnxruntime`: CPU execution provider; `cuda` and `tensorrt` execution providers on request.
- `openvino`: CPU, or GPU when present; an explicit inference precision (OpenVINO's CPU default is
  bf16 on CPUs that have it, which would time a different model than the one exported).
- `tensorrt`: a serialized engine (`model.engine`) with CUDA buffers from `cuda-python`.

The torch eager reference (`torch`) registers from `bench/torch_runner.py`, which the device runner never
imports. A device or provider that is not present raises `BackendUnavailable`; nothing falls back silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgedistill.errors import BackendUnavailable, BenchError
from edgedistill.registry import Registry
from edgedistill.runtimes import not_installed


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model.

    Attributes:
        threads: Intra-op CPU threads.
        device: "cpu", "cuda" / "tensorrt" (ONNX Runtime execution providers), "gpu" (OpenVINO, TensorRT).
        precision: The artifact's precision (fp32, fp16, int8); picks OpenVINO's default hint.
        hint: OpenVINO `INFERENCE_PRECISION_HINT` (f32, f16, bf16); None: f32 on CPU, f16 on GPU.
    """

    threads: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    hint: str | None = None


class Model(Protocol):
    """A loaded model that runs one batch."""

    details: dict[str, Any]

    def run(self, x: np.ndarray) -> Any:
        """Run one inference on `x` (NCHW float32) and return the runtime's raw output."""
        ...


class ModelFactory(Protocol):
    def __call__(self, model_path: Path, options: RuntimeOptions) -> Model: ...


RUNTIMES: Registry[ModelFactory] = Registry("runtime")

# ONNX Runtime execution providers by --device; the first must be the one that runs the model.
ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _unsupported(runtime: str, device: str, known: Iterable[str]) -> BenchError:
    return BenchError(f"{runtime} has no device '{device}'; use one of: {', '.join(known)}")


def ort_session(model_path: str | Path, threads: int = 1, device: str = "cpu") -> Any:
    """An ONNX Runtime session with `threads` intra-op threads and sequential execution.

    Inter-op parallelism is off so that `threads` is the whole thread budget, as on a device.

    Raises:
        BackendUnavailable: onnxruntime, or the execution provider `device` needs, is missing.
        BenchError: An unknown device.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise not_installed("onnxruntime") from None
    if device not in ORT_PROVIDERS:
        raise _unsupported("onnxruntime", device, ORT_PROVIDERS)
    providers = ORT_PROVIDERS[device]
    if providers[0] not in ort.get_available_providers():
        raise BackendUnavailable(
            f"onnxruntime has no {providers[0]} here (available: {', '.join(ort.get_available_providers())}); "
            "install onnxruntime-gpu on a CUDA machine"
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; warnings about unused initializers are noise here
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)


@RUNTIMES.register("onnxruntime")
class OnnxRuntimeModel:
    """ONNX Runtime (FP32 and QDQ INT8 models) on the CPU, CUDA or TensorRT execution provider."""

    def __init__(self, model_path: Path, options: RuntimeOptions) -> None:
        self.session = ort_session(model_path, options.threads, options.device)
        self.input_name: str = self.session.get_inputs()[0].name
        self.details = {"device": options.device, "providers": self.session.get_providers()}

    def run(self, x: np.ndarray) -> Any:
        return self.session.run(None, {self.input_name: x})

    def bare(self, x: np.ndarray) -> Callable[[], object]:
        """The session's own call on `x`, without this wrapper."""
        session, feed = self.session, {self.input_name: x}
        return lambda: session.run(None, feed)


OPENVINO_DEVICES = {"cpu": "CPU", "gpu": "GPU"}


def openvino_config(options: RuntimeOptions) -> dict[str, Any]:
    """compile_model properties: explicit precision hint, latency mode, one stream, CPU threads."""
    default_hint = "f16" if options.device == "gpu" else "f32"
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": options.hint or default_hint,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    if options.device == "cpu":
        config["INFERENCE_NUM_THREADS"] = options.threads
    return config


@RUNTIMES.register("openvino")
class OpenVinoModel:
    """OpenVINO IR (`model.xml` + `.bin`) compiled for the CPU or GPU, run with one infer request."""

    def __init__(self, model_path: Path, options: RuntimeOptions) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise not_installed("openvino") from None
        if options.device not in OPENVINO_DEVICES:
            raise _unsupported("openvino", options.device, OPENVINO_DEVICES)
        core = ov.Core()
        device = OPENVINO_DEVICES[options.device]
        if not any(d.split(".")[0] == device for d in core.available_devices):
            raise BackendUnavailable(f"openvino sees no {device} here (available: {', '.join(core.available_devices)})")
        config = openvino_config(options)
        self.compiled = core.compile_model(str(model_path), device, config)
        self.request = self.compiled.create_infer_request()
        self.details = {
            "device": device,
            "config": {k: str(v) for k, v in config.items()},
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        }

    def run(self, x: np.ndarray) -> Any:
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data

    def bare(self, x: np.ndarray) -> Callable[[], object]:
        """The infer request's own call on `x`, without this wrapper."""
        request = self.request
        return lambda: request.infer({0: x})


def _cuda_runtime() -> Any:
    try:  # cuda-python >= 12.6 names it cuda.bindings; older releases cuda.cudart
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            raise not_installed("tensorrt", "cuda-python") from None
    return cudart


def _cuda_check(result: Any) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BenchError(f"CUDA call failed: {err}")
    return rest[0] if len(rest) == 1 else rest


@RUNTIMES.register("tensorrt")
class TensorRtModel:
    """A serialized TensorRT engine (TensorRT >= 10 tensor API): host → device copy, execute, device → host."""

    def __init__(self, model_path: Path, options: RuntimeOptions) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise not_installed("tensorrt") from None
        if options.device not in ("gpu", "cuda"):
            raise _unsupported("tensorrt", options.device, ["gpu"])
        self.cudart = _cuda_runtime()
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(Path(model_path).read_bytes())
        if engine is None:
            raise BenchError(f"{model_path}: TensorRT cannot load this engine (built for another GPU or version?)")
        self.engine, self.context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.stream = _cuda_check(self.cudart.cudaStreamCreate())
        self.buffers: dict[str, tuple[int, int]] = {}  # name → (device pointer, bytes)
        self.host_out: dict[str, np.ndarray] = {}
        self.details = {"device": "gpu", "tensorrt": trt.__version__, "inputs": self.inputs, "outputs": self.outputs}

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _cuda_check(self.cudart.cudaFree(ptr))
            ptr = _cuda_check(self.cudart.cudaMalloc(nbytes))
            self.buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, ptr)
        return ptr

    def run(self, x: np.ndarray) -> Any:
        cudart, name = self.cudart, self.inputs[0]
        self.context.set_input_shape(name, x.shape)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ptr = self._buffer(name, x.nbytes)
        _cuda_check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream))
        for out in self.outputs:
            shape = tuple(self.context.get_tensor_shape(out))
            host = self.host_out.get(out)
            if host is None or host.shape != shape:
                host = self.host_out[out] = np.empty(shape, dtype=np.float32)
            self._buffer(out, host.nbytes)
        if not self.context.execute_async_v3(self.stream):
            raise BenchError("TensorRT execute_async_v3 failed")
        for out, host in self.host_out.items():
            ptr = self.buffers[out][0]
            _cuda_check(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream))
        _cuda_check(cudart.cudaStreamSynchronize(self.stream))
        return [self.host_out[o] for o in self.outputs]
