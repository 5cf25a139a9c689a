"""ONNX (FP32 or explicit-QDQ INT8) → TensorRT: the device build script, its README, and the Python API builder.

Engines are specific to the GPU and the TensorRT version, so the artifact ships the ONNX model plus
`build_engine.sh` for the device; the engine is built here only when `tensorrt` is importable.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import ExportError
from edgedistill.export.manifest import EngineInfo
from edgedistill.io import atomic_write_bytes, atomic_write_text
from edgedistill.recipe import TensorRTBuild
from edgedistill.runtimes import Precision, not_installed

BUILD_SCRIPT = "build_engine.sh"
ENGINE_FILE = "model.engine"
DEVICE_README = "README.md"

_SCRIPT = """\
#!/usr/bin/env bash
# Build the TensorRT engine for THIS device from {model}: engines are specific to the GPU and TensorRT version.
# Usage: ./build_engine.sh            (env: TRTEXEC=path/to/trtexec, WORKSPACE_MB={workspace}, TRT_MAJOR=8|10)
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
WORKSPACE_MB="${{WORKSPACE_MB:-{workspace}}}"
if [[ -z "${{TRT_MAJOR:-}}" ]]; then
  # trtexec's banner says e.g. "TensorRT v100300" (10.3.0) or "TensorRT v8602" (8.6.2)
  v="$("$TRTEXEC" --help 2>&1 | sed -n 's/.*TensorRT v\\([0-9][0-9]*\\).*/\\1/p' | head -n 1)"
  [[ -n "$v" ]] || {{ echo "cannot read the TensorRT version from $TRTEXEC; set TRT_MAJOR=8 or 10" >&2; exit 2; }}
  if (( v >= 100000 )); then TRT_MAJOR=$(( v / 10000 )); else TRT_MAJOR=$(( v / 1000 )); fi
fi
{precision_block}
"$TRTEXEC" --onnx={model} --saveEngine={engine} \\
  --minShapes={input}:{min_shape} --optShapes={input}:{opt_shape} --maxShapes={input}:{max_shape} \\
  --timingCacheFile={cache} --memPoolSize=workspace:"$WORKSPACE_MB" \\
  "${{PRECISION_FLAGS[@]}}" "$@"
echo "engine: $(pwd)/{engine}"
"""

_PRECISION = {
    # Explicit quantization: from TensorRT 10 the Q/DQ nodes fix every layer's precision (strong typing, no
    # precision flags); TensorRT 8.x needs --int8, and --fp16 lets the layers left in float run in FP16.
    "int8": "if (( TRT_MAJOR >= 10 )); then PRECISION_FLAGS=(--stronglyTyped)\n"
    "else PRECISION_FLAGS=(--int8 --fp16); fi",
    "fp16": "PRECISION_FLAGS=(--fp16)",
    "fp32": "PRECISION_FLAGS=()",
}

_README = """\
# TensorRT {precision} artifact: build the engine on the device

`{model}` is {what}. A TensorRT engine only runs on the GPU model and TensorRT version that built it, so it is
built on the target (e.g. a Jetson), not shipped.

1. Copy this folder to the device (JetPack 5.x ships TensorRT 8.5, JetPack 6.0/6.1 TensorRT 8.6, JetPack 6.2
   TensorRT 10.3). `trtexec` is in `/usr/src/tensorrt/bin/`.
2. For stable timings: `sudo nvpmodel -m <mode>` (the budget's power mode) and `sudo jetson_clocks`.
3. Run `./build_engine.sh`. It detects the TensorRT major version and runs
   `{command}`
   (workspace limit {workspace} MiB: `WORKSPACE_MB=...`; the timing cache `{cache}` makes rebuilds fast).
4. `trtexec --loadEngine={engine} --shapes={input}:{opt_shape}` reports the engine's latency.

Check `manifest.json` before deploying: input shape and normalisation, class names, and the accuracy measured
here ({accuracy_note}).
"""


def _shapes(input_shape: list[int], batch: int) -> dict[str, str]:
    chw = "x".join(str(d) for d in input_shape[1:])
    fixed = input_shape[0] if input_shape[0] > 0 else None
    return {
        "min_shape": f"{fixed or 1}x{chw}",
        "opt_shape": f"{fixed or batch}x{chw}",
        "max_shape": f"{fixed or batch}x{chw}",
    }


@dataclass(frozen=True)
class EngineSpec:
    """What to build on the device: the ONNX model in `out_dir`, its precision, input and build options."""

    out_dir: Path
    model_file: str
    precision: Precision
    build: TensorRTBuild
    input_name: str
    input_shape: list[int]
    batch: int


def write_build_files(spec: EngineSpec) -> list[str]:
    """Write `build_engine.sh` (executable) and the device `README.md` next to the ONNX model.

    Returns:
        The file names written (relative to `out_dir`), for the manifest.
    """
    out_dir, model_file, precision, build = spec.out_dir, spec.model_file, spec.precision, spec.build
    input_name, input_shape, batch = spec.input_name, spec.input_shape, spec.batch
    fields = {
        "model": model_file,
        "engine": ENGINE_FILE,
        "cache": build.timing_cache,
        "workspace": build.workspace_mb,
        "input": input_name,
        "precision": precision.upper(),
        **_shapes(input_shape, batch),
    }
    script = _SCRIPT.format(precision_block=_PRECISION[precision], **fields)
    path = atomic_write_text(out_dir / BUILD_SCRIPT, script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    flags = {"int8": "--stronglyTyped (TensorRT 10) or --int8 --fp16 (8.x)", "fp16": "--fp16", "fp32": ""}[precision]
    command = (
        f"trtexec --onnx={model_file} --saveEngine={ENGINE_FILE} --timingCacheFile={build.timing_cache} "
        f"--memPoolSize=workspace:{build.workspace_mb} {flags}"
    ).strip()
    what = {
        "int8": "an explicit-quantization QDQ model (symmetric INT8, zero point 0, per-channel weights)",
        "fp16": "the FP32 ONNX model; TensorRT runs it in FP16 (--fp16)",
        "fp32": "the FP32 ONNX model",
    }[precision]
    note = "ONNX Runtime CPU, Q/DQ simulated in float" if precision == "int8" else "ONNX Runtime CPU, FP32"
    readme = _README.format(command=command, what=what, accuracy_note=note, **fields)
    atomic_write_text(out_dir / DEVICE_README, readme)
    return [BUILD_SCRIPT, DEVICE_README]


def tensorrt_version() -> str | None:
    """The importable TensorRT's version, or None."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: Precision,
    build: TensorRTBuild,
    input_shape: list[int],
    batch: int,
) -> Path:
    """Build and serialize an engine with the TensorRT Python API (the same settings as `build_engine.sh`).

    Raises:
        BackendUnavailable: tensorrt is not importable.
        ExportError: The ONNX parser or the builder failed.
    """
    try:
        import tensorrt as trt
    except ImportError:
        raise not_installed("tensorrt") from None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0
    if major >= 10 and precision == "int8":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT cannot parse the model ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, build.workspace_mb << 20)
    cache_path = Path(engine_path).parent / build.timing_cache
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if precision == "fp16" or (precision == "int8" and major < 10):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and major < 10:
        config.set_flag(trt.BuilderFlag.INT8)
    shapes = {k: tuple(int(d) for d in v.split("x")) for k, v in _shapes(input_shape, batch).items()}
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, shapes["min_shape"], shapes["opt_shape"], shapes["max_shape"])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return Path(engine_path)


def tensorrt_artifact(spec: EngineSpec) -> tuple[EngineInfo, list[str]]:
    """Write the build files; build the engine too when TensorRT is importable (else record why not).

    Returns:
        The manifest's engine record and the extra files to hash.
    """
    files = write_build_files(spec)
    version, engine, reason = tensorrt_version(), None, None
    if version is None:
        reason = "tensorrt is not importable here; run build_engine.sh on the device (engines are device-specific)"
    else:
        engine = build_engine(
            spec.out_dir / spec.model_file,
            spec.out_dir / ENGINE_FILE,
            spec.precision,
            spec.build,
            spec.input_shape,
            spec.batch,
        )
        files.append(engine.name)
    info = EngineInfo(
        file=engine.name if engine else None,
        reason=reason,
        build_script=BUILD_SCRIPT,
        tensorrt=version,
        workspace_mb=spec.build.workspace_mb,
        timing_cache=spec.build.timing_cache,
    )
    return info, files
