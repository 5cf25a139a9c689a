"""Pretrained weights of a `timm` student: read them (`packaged:NAME` or a local file) and load them into the net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.errors import CheckpointError, ConfigError

_FIELD = "student.options"


def read_pretrained(weights: str, model: str) -> dict[str, torch.Tensor]:
    """The state dict named by `weights`: `packaged:NAME` (an offline weight package) or a local file.

    Raises:
        ConfigError: Unknown packaged name, or packaged weights of another architecture.
        CheckpointError: Missing or unreadable file.
    """
    from edgedistill.teachers.weights import read_weights

    if weights.startswith("packaged:"):
        from edgedistill.data.packages import pkg_dir
        from edgedistill.teachers.zoo import _PACKAGED

        name = weights.removeprefix("packaged:")
        if name not in _PACKAGED:
            raise ConfigError(f"{_FIELD}.weights: unknown packaged weights '{name}'; known: {sorted(_PACKAGED)}")
        package, rel, arch, remap = _PACKAGED[name]
        if arch != model:
            raise ConfigError(f"{_FIELD}.weights: packaged:{name} holds '{arch}' weights, not '{model}'")
        path = pkg_dir(package) / rel
        return remap(_read(read_weights, path))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{_FIELD}.weights: {path}: no such file (a safetensors or torch state dict)")
    return _read(read_weights, path)


def _read(reader: Any, path: Path) -> dict[str, torch.Tensor]:
    try:
        state: dict[str, torch.Tensor] = reader(path)
    except CheckpointError as e:
        raise CheckpointError(f"{_FIELD}.weights: {e}") from None
    return state


def _mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """The first missing, unexpected or mis-shaped tensor, in words (None: `found` fits)."""
    # BatchNorm fills in a missing batch counter itself (as a strict torch load would), so it is not required.
    missing = sorted(k for k in set(expected) - set(found) if not k.endswith("num_batches_tracked"))
    if missing:
        return f"missing {len(missing)} tensors, e.g. '{missing[0]}'"
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        return f"{len(unexpected)} unknown tensors, e.g. '{unexpected[0]}'"
    for name, tensor in found.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            return f"'{name}' has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name].shape)}"
    return None


def load_pretrained(
    net: nn.Module, model: str, weights: str, stem: str, classifier: str
) -> dict[str, torch.Tensor] | None:
    """Load `weights` into the timm `net` (all but its classifier), adapting a 3-channel stem to the net's inputs.

    Args:
        net: The timm network, built with the task's classes and input channels.
        model: Its timm name (for messages).
        weights: `packaged:NAME` or a local state-dict file.
        stem: Module path of the stem conv.
        classifier: Module path of the classifier.

    Returns:
        The weights' own classifier tensors (`weight`, `bias`), or None if the file has none (a headless backbone).

    Raises:
        ConfigError | CheckpointError: See `read_pretrained`; also weights that do not fit `net` (one line).
    """
    from timm.models import adapt_input_conv

    state = dict(read_pretrained(weights, model))
    prefix = f"{classifier}."
    head = {k.removeprefix(prefix): state.pop(k) for k in list(state) if k.startswith(prefix)}
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith(prefix)}
    key = f"{stem}.weight"
    stem_w, want = state.get(key), expected.get(key)
    if stem_w is not None and want is not None and stem_w.ndim == 4 and stem_w.shape[1] != want.shape[1]:
        state[key] = adapt_input_conv(int(want.shape[1]), stem_w)
    problem = _mismatch(expected, state)
    if problem:
        raise CheckpointError(f"{_FIELD}.weights: {weights} does not fit timm '{model}' ({problem})")
    net.load_state_dict(state, strict=False)  # exactly the classifier (and maybe batch counters) left out
    return head or None
