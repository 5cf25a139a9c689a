"""Device and mixed-precision selection (no silent fallback: asking for CUDA without CUDA raises)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from edgedistill.errors import BackendUnavailable


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available else cpu; `cuda` without CUDA raises BackendUnavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable("--device cuda: no CUDA device is visible (use --device cpu or auto)")
    if name not in {"cpu", "mps"} and not name.startswith("cuda"):
        raise BackendUnavailable(f"--device {name}: expected cpu, cuda, cuda:N or auto")
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
