"""Facts about the machine a benchmark ran on (stdlib only, safe for the device runner)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    # x86 says "model name"; many ARM kernels only give "Hardware" or "Model".
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def _mem_total_mb() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return None


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS/Windows
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, logical/usable cores, platform, python, CPU governor and total memory."""
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": _affinity(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "governor": governor.strip() if governor else None,
        "mem_total_mb": _mem_total_mb(),
    }


# A package may ship under several distribution names (onnxruntime-gpu, opencv-python-headless, ...).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
}


def package_versions(packages: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `packages` (plus python) from package metadata, without importing them.

    Packages that are not installed are left out.
    """
    out = {"python": platform.python_version()}
    for pkg in packages:
        for dist in DISTRIBUTIONS.get(pkg, (pkg,)):
            try:
                out[pkg] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out
