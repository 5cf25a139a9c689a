"""Versions of the packages that produced an artifact, for its manifest."""

from __future__ import annotations

from edgedistill.bench.machine import package_versions
from edgedistill.runtimes import versioned_packages

PACKAGES = versioned_packages()


def runtime_versions() -> dict[str, str]:
    """python plus the installed ones of numpy, torch, onnx, every runtime's packages and edgedistill.

    Read from package metadata, so nothing heavy is imported.
    """
    return package_versions(PACKAGES)
