"""Domain errors. The CLI shows any `EdgedistillError` as one line on stderr and exits with code 2.

Bugs (every other exception) keep their traceback.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class EdgedistillError(Exception):
    """Base of every error a user can cause and fix (bad file, missing backend, budget violation)."""

    exit_code: int = 2


class ConfigError(EdgedistillError):
    """A YAML/JSON config file is missing, malformed or fails validation."""


class BudgetError(ConfigError):
    """A budget file is invalid, or a result violates the budget."""


class RegistryError(EdgedistillError, KeyError):
    """An unknown name was asked of a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(EdgedistillError):
    """A dataset, split or calibration set cannot be built as asked."""


class CheckpointError(EdgedistillError):
    """A checkpoint or weights file is missing, corrupt or does not fit the model."""


class ExportError(EdgedistillError):
    """An export or quantization step failed or violated the accuracy guard."""


class ResourceError(EdgedistillError):
    """Not enough disk space or memory for what was asked."""


class BenchError(EdgedistillError):
    """A latency measurement could not be taken."""


class BackendUnavailable(EdgedistillError):
    """An optional backend (onnxruntime, openvino, tensorrt, CUDA) is not installed or not usable."""

    @classmethod
    def for_extra(cls, backend: str, extra: str | None = None) -> BackendUnavailable:
        """Error telling the user which extra to install for `backend`."""
        return cls(f"{backend} is not installed: pip install edgedistill[{extra or backend}]")


def reason(e: BaseException, limit: int = 200) -> str:
    """A library exception as a short clause for a one-line message (first line, no terminal colours).

    `torch.load(weights_only=True)` refusing a pickled object says so plainly instead of torch's how-to-bypass text.
    """
    if type(e).__name__ == "UnpicklingError":
        return "holds pickled Python objects, refused by weights_only loading"
    text = _ANSI.sub("", str(e)).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
