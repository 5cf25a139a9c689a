"""Save and load banks and subnets as safetensors files that carry their own architecture spec.

The spec (family + constructor kwargs) is stored as JSON under the metadata key `edgedistill`,
so a file alone is enough to rebuild the network; loading checks every tensor against it. A `<file>.sha256`
sidecar is written next to each file and checked on load when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from edgedistill.errors import CheckpointError
from edgedistill.io import atomic_write, sidecar_problem, write_sha256_sidecar
from edgedistill.models.students import STUDENTS, SlimmableBank

METADATA_KEY = "edgedistill"


def save_bank(bank: SlimmableBank, path: str | Path) -> Path:
    """Write a slimmable bank's weights and spec atomically to `path` (safetensors)."""
    if not bank.slim:
        raise ValueError("save_bank: got a plain network; use save_subnet")
    return _save(bank, path)


def save_subnet(net: SlimmableBank, path: str | Path) -> Path:
    """Write an extracted (plain) subnet's weights and spec atomically to `path` (safetensors)."""
    if net.slim:
        raise ValueError("save_subnet: got a slimmable bank; use save_bank or extract() first")
    return _save(net, path)


def load_bank(path: str | Path) -> SlimmableBank:
    """Rebuild a bank from `path`, in eval mode at its largest config.

    Raises:
        CheckpointError: Missing or unreadable file, missing/invalid spec, a subnet file, or tensors
            that do not fit the spec.
    """
    return _load(Path(path), slim=True)


def load_subnet(path: str | Path) -> SlimmableBank:
    """Rebuild an extracted subnet from `path`, in eval mode.

    Raises:
        CheckpointError: Missing or unreadable file, missing/invalid spec, a bank file, or tensors
            that do not fit the spec.
    """
    return _load(Path(path), slim=False)


def _save(net: SlimmableBank, path: str | Path) -> Path:
    # safetensors refuses views and shared storage, hence contiguous clones.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps(net.spec())}
    out = atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    write_sha256_sidecar(out)  # a changed file is refused on load; files from elsewhere have none
    return out


def _load(path: Path, slim: bool) -> SlimmableBank:
    kind = "bank" if slim else "subnet"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected a {kind} .safetensors file)")
    problem = sidecar_problem(path, required=False)
    if problem:
        raise CheckpointError(f"{problem}; the file changed after edgedistill wrote it")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    spec = _read_spec(path, metadata)
    if bool(spec.get("slim", True)) != slim:
        other = "subnet" if slim else "bank"
        raise CheckpointError(f"{path}: holds a {other}, expected a {kind}; use load_{other}")
    family = spec.pop("family", None)
    if not isinstance(family, str) or family not in STUDENTS:
        raise CheckpointError(f"{path}: unknown student family {family!r}; known: {', '.join(STUDENTS.names())}")
    try:
        with torch.device("meta"):  # shapes only: a spec claiming huge layers allocates nothing before the check
            shapes = STUDENTS.get(family)(**spec).state_dict()
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: spec does not build a {family} {kind}: {e}") from e
    check_tensors(path, shapes, tensors)
    net = STUDENTS.get(family)(**spec)
    net.load_state_dict(tensors, strict=True)
    return net.eval()


def _read_spec(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: no '{METADATA_KEY}' metadata; not written by edgedistill save_bank/save_subnet")
    try:
        spec = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: '{METADATA_KEY}' metadata is not valid JSON ({e})") from e
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path}: '{METADATA_KEY}' metadata must be a JSON object")
    return spec


def check_tensors(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """One-line `CheckpointError` naming the first tensor of `found` that is missing, extra or mis-shaped."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(f"{path}: missing {len(missing)} tensors the spec needs, e.g. '{missing[0]}'")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} tensors the spec does not have, e.g. '{unexpected[0]}'")
    for name, ref in expected.items():
        if tuple(found[name].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{path}: tensor '{name}' has shape {tuple(found[name].shape)}, the model expects {tuple(ref.shape)}"
            )
