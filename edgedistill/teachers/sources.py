"""Teacher sources (registry), addressed as `kind:name?option=value&...`.

`ccexam:` (packaged digit CNNs) lives here; `timm:`, `torchvision:`, `checkpoint:` and `packaged:` are in
`teachers/zoo.py`. Every teacher declares its own input pipeline; nothing is downloaded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import parse_qsl

import numpy as np
import torch
from torch import nn

from edgedistill.data.packages import pkg_dir
from edgedistill.errors import ConfigError
from edgedistill.io import sha256_file
from edgedistill.registry import Registry
from edgedistill.teachers.preprocess import TeacherInput
from edgedistill.teachers.weights import load_strict, read_weights


@dataclass
class Teacher:
    """A frozen pretrained model plus the pipeline that feeds it target images.

    Attributes:
        head: the final classifier layer; its input is the penultimate (pooled) feature vector.
            None (e.g. TorchScript) = the logits double as features.
        weights_sha256: identity of the weights, part of the teacher-cache key.
    """

    name: str
    model: nn.Module
    input: TeacherInput
    num_classes: int
    source: str
    head: nn.Module | None = None
    weights_sha256: str = ""

    @torch.inference_mode()
    def predict(self, x_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features, logits) for uint8 target images (N, C, h, w), both float32."""
        captured: list[torch.Tensor] = []
        hook = None
        if self.head is not None:
            hook = self.head.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        # Denormal activations make some pretrained CNNs (EfficientNet-Lite0) ~5x slower on x86 CPUs; flush
        # them to zero while the teacher runs (the flag is process-wide and off by default, so it is reset).
        flush = x_u8.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            # channels-last, as load_teacher stores the convs: ~1.4x (digit CNNs) to 1.8x (Lite0) faster on CPU
            logits = self.model(self.input(x_u8).contiguous(memory_format=torch.channels_last)).float()
        finally:
            if flush:
                torch.set_flush_denormal(False)
            if hook is not None:
                hook.remove()
        feats = captured[-1].flatten(1).float() if captured else logits
        return feats, logits

    def folded(self) -> Teacher:
        """A copy for inference only, each `Conv2d` directly followed by a plain `BatchNorm2d` (in a `Sequential`)
        folded into one conv: the cache step runs ~20% faster on the digit CNNs. Scripted models are returned as is."""
        if isinstance(self.model, torch.jit.ScriptModule):
            return self
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        teacher = copy.deepcopy(self)  # one deepcopy: `head` stays the copied model's own layer
        for seq in [m for m in teacher.model.modules() if isinstance(m, nn.Sequential)]:
            for i in range(len(seq) - 1):
                conv, bn = seq[i], seq[i + 1]
                if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                    seq[i], seq[i + 1] = (
                        fuse_conv_bn_eval(cast(nn.Conv2d, conv), cast(nn.BatchNorm2d, bn)),
                        nn.Identity(),
                    )
        teacher.model.to(memory_format=torch.channels_last)
        return teacher

    def features(self, x_u8: torch.Tensor) -> torch.Tensor:
        """Penultimate pooled features (not normalised)."""
        return self.predict(x_u8)[0]

    def logits(self, x_u8: torch.Tensor) -> torch.Tensor:
        """Logits in the teacher's own label space (e.g. 1000 ImageNet classes)."""
        return self.predict(x_u8)[1]


# A source factory gets (name, options, base folder for relative paths).
SourceFactory = Callable[[str, dict[str, str], Path], Teacher]
TEACHER_SOURCES: Registry[SourceFactory] = Registry("teacher source")


def parse_source(source: str) -> tuple[str, str, dict[str, str]]:
    """`ccexam:usps?crop=0.72` → ("ccexam", "usps", {"crop": "0.72"})."""
    kind, sep, rest = source.partition(":")
    if not sep or not rest:
        raise ConfigError(f"teacher source '{source}': expected 'kind:name[?option=value&...]'")
    name, _, query = rest.partition("?")
    return kind, name, dict(parse_qsl(query, strict_parsing=bool(query)))


def load_teacher(source: str, device: torch.device | str = "cpu", base: Path | None = None) -> Teacher:
    """Build the teacher named by `source`, frozen, in eval mode, on `device`.

    Args:
        base: folder that relative weight paths are resolved against (the task file's folder).
    """
    kind, name, opts = parse_source(source)
    teacher = TEACHER_SOURCES.get(kind)(name, opts, base or Path("."))
    teacher.source = source
    teacher.model.eval().to(device).to(memory_format=torch.channels_last)
    for p in teacher.model.parameters():  # not `requires_grad_`: ScriptModules lack it
        p.requires_grad_(False)
    return teacher


def last_linear(model: nn.Module) -> nn.Module | None:
    """The last `nn.Linear` in module order (the classifier of every source we load), or None."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def input_options(base: TeacherInput, opts: dict[str, str], source: str) -> TeacherInput:
    """Apply `crop`, `box`, `invert` options to a teacher's declared input pipeline."""
    known: dict[str, Callable[[str], object]] = {
        "crop": float,
        "box": int,
        "invert": lambda v: v.lower() in {"1", "true", "yes"},
    }
    check_options(opts, set(known), source)
    try:
        return base.model_copy(update={k: known[k](v) for k, v in opts.items()})
    except ValueError:
        raise ConfigError(f"teacher source '{source}': bad option value in {opts}") from None


def check_options(opts: dict[str, str], known: set[str], source: str) -> None:
    """Unknown options are errors, never ignored."""
    unknown = set(opts) - known
    if unknown:
        raise ConfigError(f"teacher source '{source}': unknown option(s) {sorted(unknown)}; known: {sorted(known)}")


# name: (class name in ccexam.models, input size, channels, mean, std)
_CCEXAM = {
    "mnist": ("MNISTNet", 28, 1, (0.1307,), (0.3081,)),
    "usps": ("USPSNet", 16, 1, (0.2471,), (0.2994,)),
    "svhn": ("SVHNNet", 32, 3, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


@TEACHER_SOURCES.register("ccexam")
def _ccexam(name: str, opts: dict[str, str], base: Path) -> Teacher:
    source = f"ccexam:{name}"
    if name not in _CCEXAM:
        raise ConfigError(f"teacher source '{source}': unknown ccexam teacher; known: {sorted(_CCEXAM)}")
    cls_name, size, ch, mean, std = _CCEXAM[name]
    import ccexam.models  # only torch.nn inside; safe to import

    model = getattr(ccexam.models, cls_name)(input_size=size)
    path = pkg_dir("ccexam") / "weights" / f"{name}.pth"
    load_strict(model, read_weights(path), path)
    inp = input_options(TeacherInput(size=size, channels=ch, mean=mean, std=std), opts, source)
    return Teacher(name, model, inp, 10, source, last_linear(model), sha256_file(path))


@torch.inference_mode()
def teacher_logits(teacher: Teacher, images: np.ndarray, batch: int = 1024) -> torch.Tensor:
    """Logits of one teacher for uint8 images (N, C, h, w), on CPU."""
    dev = next(teacher.model.parameters()).device
    out = [teacher.logits(torch.from_numpy(images[i : i + batch]).to(dev)).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)
