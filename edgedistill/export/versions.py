"""Versions of the packages that produced an artifact, for its manifest."""

from __future__ import annotations

from edgedistill.bench.machine import package_versions

PACKAGES = ("numpy", "torch", "onnx", "onnxruntime", "openvino", "nncf", "edgedistill")


def runtime_versions() -> dict[str, str]:
    """python plus the installed ones of numpy, torch, onnx, onnxruntime, openvino, nncf and edgedistill.

    Read from package metadata, so nothing heavy is imported.
    """
    return package_versions(PACKAGES)
