"""Facts about the machine a benchmark ran on (stdlib only, safe for the device runner)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from edgedistill.runtimes import distributions


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


# CPU features that decide which INT8/FP16 kernels a runtime can use.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimd", "asimddp")


def cpu_flags() -> list[str]:
    """The `KERNEL_FLAGS` this CPU has (/proc/cpuinfo; empty where it is not readable)."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            have = set(value.split())
            return [f for f in KERNEL_FLAGS if f in have]
    return []


def _command(*cmd: str, timeout_s: float = 5.0) -> str | None:
    """stdout of a read-only query command, or None when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _tegrastats_line(timeout_s: float = 3.0) -> str | None:
    """One tegrastats sample (power rails, GPU load); tegrastats runs until stopped, so it is stopped here."""
    if shutil.which("tegrastats") is None:
        return None
    try:
        proc = subprocess.Popen(["tegrastats", "--interval", "200"], stdout=subprocess.PIPE, text=True)
    except OSError:
        return None
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return line or None


def jetson_info() -> dict[str, Any] | None:
    """On a Jetson (L4T): release, nvpmodel mode, jetson_clocks state and one tegrastats sample; else None.

    Only read-only queries: nothing changes the power mode or the clocks. A query that needs root
    and fails is recorded as None.
    """
    release = _read("/etc/nv_tegra_release")
    if release is None:
        return None
    return {
        "l4t": release.splitlines()[0].strip() if release.strip() else None,
        "model": (_read("/proc/device-tree/model") or "").strip("\x00\n ") or None,
        "nvpmodel": _command("nvpmodel", "-q"),
        "jetson_clocks": _command("jetson_clocks", "--show"),
        "tegrastats": _tegrastats_line(),
    }


def machine_info() -> dict[str, Any]:
    """CPU model and kernel-relevant flags, cores, platform, python, governor, memory; Jetson state when on one."""
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
        "cpu_flags": cpu_flags(),
        # Other processes competing for the cores inflate every percentile; recorded so a reader can tell.
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "jetson": jetson_info(),
    }


def package_versions(packages: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `packages` (plus python) from package metadata, without importing them.

    Packages that are not installed are left out.
    """
    out = {"python": platform.python_version()}
    for pkg in packages:
        for dist in distributions(pkg):  # a runtime may ship under several names (onnxruntime-gpu, ...)
            try:
                out[pkg] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out
