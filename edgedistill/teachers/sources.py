"""Teacher sources (registry), addressed as `kind:name?option=value&...`.

Issue-3 scope: the packaged ccexam digit teachers (MNIST, USPS, SVHN). Every teacher declares its
own input pipeline; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import torch
from torch import nn

from edgedistill.data.packages import pkg_dir
from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.registry import Registry
from edgedistill.teachers.preprocess import TeacherInput


@dataclass
class Teacher:
    """A frozen pretrained model plus the pipeline that feeds it target images."""

    name: str
    model: nn.Module
    input: TeacherInput
    num_classes: int
    source: str

    @torch.inference_mode()
    def logits(self, x_u8: torch.Tensor) -> torch.Tensor:
        """Teacher logits for uint8 target images (N, C, h, w)."""
        return self.model(self.input(x_u8)).float()


TEACHER_SOURCES: Registry[Callable[[str, dict[str, str]], Teacher]] = Registry("teacher source")


def parse_source(source: str) -> tuple[str, str, dict[str, str]]:
    """`ccexam:usps?crop=0.72` → ("ccexam", "usps", {"crop": "0.72"})."""
    kind, sep, rest = source.partition(":")
    if not sep or not rest:
        raise ConfigError(f"teacher source '{source}': expected 'kind:name[?option=value&...]'")
    name, _, query = rest.partition("?")
    return kind, name, dict(parse_qsl(query, strict_parsing=bool(query)))


def load_teacher(source: str, device: torch.device | str = "cpu") -> Teacher:
    """Build the teacher named by `source`, frozen, in eval mode, on `device`."""
    kind, name, opts = parse_source(source)
    teacher = TEACHER_SOURCES.get(kind)(name, opts)
    teacher.model.eval().requires_grad_(False).to(device)
    return teacher


def _input_options(base: TeacherInput, opts: dict[str, str], source: str) -> TeacherInput:
    known = {"crop": float, "box": int, "invert": lambda v: v.lower() in {"1", "true", "yes"}}
    unknown = set(opts) - set(known)
    if unknown:
        raise ConfigError(f"teacher source '{source}': unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        return base.model_copy(update={k: known[k](v) for k, v in opts.items()})
    except ValueError:
        raise ConfigError(f"teacher source '{source}': bad option value in {opts}") from None


# name: (class name in ccexam.models, input size, channels, mean, std)
_CCEXAM = {
    "mnist": ("MNISTNet", 28, 1, (0.1307,), (0.3081,)),
    "usps": ("USPSNet", 16, 1, (0.2471,), (0.2994,)),
    "svhn": ("SVHNNet", 32, 3, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


@TEACHER_SOURCES.register("ccexam")
def _ccexam(name: str, opts: dict[str, str]) -> Teacher:
    source = f"ccexam:{name}"
    if name not in _CCEXAM:
        raise ConfigError(f"teacher source '{source}': unknown ccexam teacher; known: {sorted(_CCEXAM)}")
    cls_name, size, ch, mean, std = _CCEXAM[name]
    import ccexam.models  # only torch.nn inside; safe to import

    model = getattr(ccexam.models, cls_name)(input_size=size)
    path = pkg_dir("ccexam") / "weights" / f"{name}.pth"
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot load teacher weights ({str(e).splitlines()[0]})") from None
    base = TeacherInput(size=size, channels=ch, mean=mean, std=std)
    return Teacher(name=name, model=model, input=_input_options(base, opts, source), num_classes=10, source=source)
