"""What edgedistill knows about each inference runtime, in one table (standard library only).

The device runner reads it too, so it imports nothing but the standard library and `edgedistill.errors`.
Adding a runtime means a row here, its model class in `bench/runtimes.py` (timing), and, when it has an
artifact, its exporters in `export/exporters.py` (`EXPORTERS`) and, when search can time it, its builder in
`search/measure.py` (`ARTIFACT_BUILDERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgedistill.errors import BackendUnavailable

Runtime = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
Precision = Literal["fp32", "fp16", "int8"]
DEVICE_RUNNER = "edgedistill.bench.runner"  # the torch-free runner copied to devices (`bench --emit-runner`)


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime.

    Attributes:
        name: Runtime name in budgets, recipes, manifests and bench records.
        precisions: Precisions it executes; budgets and recipes are checked against them.
        extra: The edgedistill extra that installs it (`pip install "edgedistill[EXTRA]"`); None: always installed.
        package: Its pip package, pinned in the device runner's requirements.
        distributions: Distribution names it may be installed under (versions are read from their metadata).
        versioned: Packages whose versions an export manifest records for this runtime.
        exporter: Whether it has an export artifact (`EXPORTERS` has a `NAME-PRECISION` exporter for it).
        profiler: Whether `search`/`profile` can time it here (`ARTIFACT_BUILDERS` has a builder for it).
        bench_runner: The module that times it in its own process: the torch-free device runner, or torch's own.
        runner_device: The device runner's default `--device` for its artifacts.
    """

    name: Runtime
    precisions: frozenset[str]
    extra: str | None
    package: str
    distributions: tuple[str, ...]
    versioned: tuple[str, ...]
    exporter: bool
    profiler: bool
    bench_runner: str = DEVICE_RUNNER
    runner_device: str = "cpu"


RUNTIME_SPECS: dict[str, RuntimeSpec] = {
    r.name: r
    for r in (
        RuntimeSpec(
            name="torch",
            precisions=frozenset({"fp32"}),
            extra=None,
            package="torch",
            distributions=("torch",),
            versioned=("torch",),
            exporter=False,  # the training runtime: timed as the eager reference, never exported
            profiler=False,
            bench_runner="edgedistill.bench.torch_runner",
        ),
        RuntimeSpec(
            name="onnxruntime",
            precisions=frozenset({"fp32", "int8"}),
            extra="onnxruntime",
            package="onnxruntime",
            distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
            versioned=("onnxruntime",),
            exporter=True,
            profiler=True,
        ),
        RuntimeSpec(
            name="openvino",
            precisions=frozenset({"fp32", "fp16", "int8"}),
            extra="openvino",
            package="openvino",
            distributions=("openvino", "openvino-nightly"),
            versioned=("openvino", "nncf"),
            exporter=True,
            profiler=False,
        ),
        RuntimeSpec(
            name="tensorrt",
            precisions=frozenset({"fp32", "fp16", "int8"}),
            extra="tensorrt",
            package="tensorrt",
            distributions=("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
            versioned=(),
            exporter=True,
            profiler=False,
            runner_device="gpu",
        ),
    )
}


def runtime_spec(name: str) -> RuntimeSpec:
    """The table row of `name`.

    Raises:
        ValueError: an unknown runtime, listing the known ones.
    """
    try:
        return RUNTIME_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown runtime '{name}'; known: {', '.join(RUNTIME_SPECS)}") from None


def check_runtime_precision(runtime: str, precision: str) -> None:
    """Raise ValueError when `runtime` cannot run `precision`."""
    allowed = runtime_spec(runtime).precisions
    if precision not in allowed:
        raise ValueError(f"runtime '{runtime}' has no {precision} support (supported: {', '.join(sorted(allowed))})")


def not_installed(runtime: str, package: str | None = None) -> BackendUnavailable:
    """The error for a missing runtime (or `package`, one it needs), naming the extra that installs it."""
    spec = runtime_spec(runtime)
    return BackendUnavailable.for_extra(package or spec.package, spec.extra)


def distributions(package: str) -> tuple[str, ...]:
    """Distribution names `package` may be installed under (itself when it has no other)."""
    spec = RUNTIME_SPECS.get(package)
    return spec.distributions if spec is not None else (package,)


def versioned_packages() -> tuple[str, ...]:
    """Packages an export manifest records: numpy, torch, onnx, every runtime's, and edgedistill."""
    out = ["numpy", "torch", "onnx"]
    for spec in RUNTIME_SPECS.values():
        out += [p for p in spec.versioned if p not in out]
    return (*out, "edgedistill")
