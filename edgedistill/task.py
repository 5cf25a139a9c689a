"""Task files: target data, teachers, student family and training recipe."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from edgedistill.config import Float, Int, SafeName, StrictModel, load_yaml_model, parse_yaml, validate_as
from edgedistill.data.config import DataConfig
from edgedistill.distill.config import TrainConfig
from edgedistill.errors import ConfigError, EdgedistillError
from edgedistill.registry import Registry


class StudentConfig(StrictModel):
    """The slimmable bank: family (auto = by input size) and width choices."""

    family: str = Field("auto", description="registered student family, or auto (resnet_cifar ≤ 64 px, else mobilenet)")
    width_choices: list[Float] = Field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0], min_length=1)
    divisor: Int = Field(8, ge=1)
    options: dict[str, bool | list[int] | int | float | str] = Field(
        default_factory=dict, description="family kwargs (a YAML true stays a bool, never the number 1)"
    )

    @field_validator("width_choices")
    @classmethod
    def _widths(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < w <= 1.0 for w in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct values in (0, 1], got {v}")
        return v


class TeacherRef(StrictModel):
    """One teacher of the pool, by source string (`ccexam:usps?crop=0.72`)."""

    source: str


class TaskConfig(StrictModel):
    """A task file (`tasks/*.yaml`); the embedded demo task is used when none is given."""

    name: SafeName
    data: DataConfig
    teachers: list[TeacherRef] = Field(default_factory=list)
    student: StudentConfig = Field(default_factory=StudentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


DEMO_TASK = "demo-mnist"
PHOTO_TASK = "groceries-224"
DIGIT_TASK_MAX_SIDE = 64  # budgets up to this input side default to digits; larger ones to photos


def default_task(input_side: int | None) -> str:
    """The packaged task a budget gets without --task: digits (`demo-mnist`) for inputs up to 64 px, where a
    28-px digit is not blown up, and the grocery photos with the pretrained Lite0 bank (`groceries-224`) above,
    where upsampled digits would make a 224-px model learn nothing a user wants."""
    return DEMO_TASK if input_side is None or input_side <= DIGIT_TASK_MAX_SIDE else PHOTO_TASK


def load_task(path: str | Path | None, input_side: int | None = None) -> tuple[TaskConfig, Path]:
    """Load a task file, or the packaged default task for a budget of `input_side` px when `path` is None.

    Returns:
        The task and the folder its relative paths are resolved against.
    """
    if path is None:
        name = default_task(input_side)
        text = resources.files("edgedistill.resources.tasks").joinpath(f"{name}.yaml").read_text()
        source = f"<packaged {name}.yaml>"
        return check_names(validate_as(TaskConfig, parse_yaml(text, source), source), source), Path(".")
    p = Path(path)
    return check_names(load_yaml_model(p, TaskConfig), str(p)), p.parent


def check_names(cfg: TaskConfig, source: str) -> TaskConfig:
    """Every registry name in the task (dataset, student, distiller, metric, teacher kinds) exists.

    Raises:
        ConfigError: `source: field.path: unknown ... did you mean ...`, before any work starts.
    """
    from edgedistill.data.domains import UNLABELED_SOURCES
    from edgedistill.data.targets import TARGETS
    from edgedistill.distill.distillers import DISTILLERS
    from edgedistill.distill.multisource import PSEUDO_LABELS
    from edgedistill.distill.online import DOMAIN_TEACHERS
    from edgedistill.models.students import STUDENTS
    from edgedistill.teachers.similarity import SIMILARITY
    from edgedistill.teachers.sources import TEACHER_SOURCES, parse_source

    if cfg.data.source == "imagefolder" and not cfg.data.root:
        raise ConfigError(f"{source}: data.root: required for source 'imagefolder' (train/<class>/, test/<class>/)")
    ms = cfg.train.multisource
    checks: list[tuple[str, Registry[Any], str]] = [("data.source", TARGETS, cfg.data.source)]
    for i, d in enumerate(cfg.data.extra_unlabeled):
        checks.append((f"data.extra_unlabeled[{i}].source", UNLABELED_SOURCES, d.source))
        if d.source == "imagefolder" and not d.root:
            raise ConfigError(f"{source}: data.extra_unlabeled[{i}].root: required for source 'imagefolder'")
    for i, ld in enumerate(cfg.data.domains):
        checks.append((f"data.domains[{i}].source", TARGETS, ld.source))
        if ld.source == "imagefolder" and not ld.root:
            raise ConfigError(f"{source}: data.domains[{i}].root: required for source 'imagefolder'")
    checks.append(("train.udon.teacher", DOMAIN_TEACHERS, cfg.train.udon.teacher))
    if cfg.student.family != "auto":
        checks.append(("student.family", STUDENTS, cfg.student.family))
    checks.append(("train.distiller", DISTILLERS, cfg.train.distiller))
    checks.append(("train.multisource.similarity", SIMILARITY, ms.similarity))
    if ms.pseudo_labels is not None:
        checks.append(("train.multisource.pseudo_labels", PSEUDO_LABELS, ms.pseudo_labels))
    for i, t in enumerate(cfg.teachers):
        try:
            checks.append((f"teachers[{i}].source", TEACHER_SOURCES, parse_source(t.source)[0]))
        except EdgedistillError as e:
            raise ConfigError(f"{source}: teachers[{i}].source: {e}") from None
    for field, registry, name in checks:
        try:
            registry.get(name)
        except EdgedistillError as e:
            raise ConfigError(f"{source}: {field}: {e}") from None
    return cfg


def choose_family(student: StudentConfig, height: int, width: int) -> str:
    """The configured family, or the one fitting the input size."""
    if student.family != "auto":
        return student.family
    return "resnet_cifar" if max(height, width) <= 64 else "mobilenet"
