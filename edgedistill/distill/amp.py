"""Device and mixed-precision selection (no silent fallback: asking for CUDA without CUDA raises)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from edgedistill.errors import BackendUnavailable
from edgedistill.options import opt


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available else cpu; `cuda` without CUDA raises BackendUnavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(
            f"{opt('device', name)}: no CUDA device is visible (use {opt('device', 'cpu')} or auto)"
        )
    if name not in {"cpu", "mps"} and not name.startswith("cuda"):
        raise BackendUnavailable(f"{opt('device', name)}: expected cpu, cuda, cuda:N or auto")
    return torch.device(name)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: `auto` = bf16 on CUDA with bf16 support, fp16 on older CUDA, off on CPU."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type != "cuda":
        raise BackendUnavailable(f"amp {mode} needs a CUDA device (got {device}); set train.amp: off or auto")
    return torch.bfloat16 if mode == "bf16" else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast when `dtype` is set, otherwise a no-op."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic torch kernels inside the block when `enabled` (restored after); a no-op otherwise."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
