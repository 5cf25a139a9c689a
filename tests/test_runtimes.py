"""The runtime table (edgedistill/runtimes.py) agrees with the registries that implement each runtime."""

from __future__ import annotations

from typing import get_args

import pytest

from edgedistill.runtimes import (
    DEVICE_RUNNER,
    RUNTIME_SPECS,
    Runtime,
    check_runtime_precision,
    not_installed,
    versioned_packages,
)


def test_table_names_every_runtime_of_the_literal() -> None:
    assert set(RUNTIME_SPECS) == set(get_args(Runtime))
    assert all(name == spec.name for name, spec in RUNTIME_SPECS.items())


def test_registries_follow_the_table() -> None:
    from edgedistill.bench.runtimes import RUNTIMES
    from edgedistill.export.exporters import EXPORTERS
    from edgedistill.search.measure import ARTIFACT_BUILDERS

    timed_here = {n for n, s in RUNTIME_SPECS.items() if s.bench_runner == DEVICE_RUNNER}
    assert set(RUNTIMES.names()) == timed_here  # torch registers from bench/torch_model.py only
    assert set(ARTIFACT_BUILDERS.names()) == {n for n, s in RUNTIME_SPECS.items() if s.profiler}
    exported = {target.split("-")[0] for target in EXPORTERS.names()} | {"onnxruntime"}  # + the FP32 reference
    assert exported == {n for n, s in RUNTIME_SPECS.items() if s.exporter}
    for target in EXPORTERS.names():
        runtime, precision = target.split("-")[:2]
        check_runtime_precision(runtime, precision)


def test_precision_check_and_versions() -> None:
    with pytest.raises(ValueError, match="runtime 'torch' has no int8 support"):
        check_runtime_precision("torch", "int8")
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        check_runtime_precision("tflite", "int8")
    assert versioned_packages() == ("numpy", "torch", "onnx", "onnxruntime", "openvino", "nncf", "edgedistill")
    assert str(not_installed("openvino")) == "openvino is not installed: pip install edgedistill[openvino]"
    assert (
        str(not_installed("tensorrt", "cuda-python"))
        == "cuda-python is not installed: pip install edgedistill[tensorrt]"
    )
