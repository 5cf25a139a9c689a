"""Task files: target data, teachers, student family and training recipe."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import Field

from edgedistill.config import StrictModel, load_yaml_model, validate_as
from edgedistill.data.targets import DataConfig
from edgedistill.distill.config import TrainConfig


class StudentConfig(StrictModel):
    """The slimmable bank: family (auto = by input size) and width choices."""

    family: str = Field("auto", description="registered student family, or auto (resnet_cifar ≤ 64 px, else mobilenet)")
    width_choices: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0], min_length=1)
    divisor: int = Field(8, ge=1)
    options: dict[str, list[int] | int | float | str] = Field(default_factory=dict, description="family kwargs")


class TeacherRef(StrictModel):
    """One teacher of the pool, by source string (`ccexam:usps?crop=0.72`)."""

    source: str


class TaskConfig(StrictModel):
    """A task file (`tasks/*.yaml`); the embedded demo task is used when none is given."""

    name: str
    data: DataConfig
    teachers: list[TeacherRef] = Field(default_factory=list)
    student: StudentConfig = Field(default_factory=StudentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


DEMO_TASK = "demo-mnist"


def load_task(path: str | Path | None) -> tuple[TaskConfig, Path]:
    """Load a task file, or the packaged demo task when `path` is None.

    Returns:
        The task and the folder its relative paths are resolved against.
    """
    if path is None:
        text = resources.files("edgedistill.resources.tasks").joinpath(f"{DEMO_TASK}.yaml").read_text()
        import yaml

        return validate_as(TaskConfig, yaml.safe_load(text), f"<packaged {DEMO_TASK}.yaml>"), Path(".")
    p = Path(path)
    return load_yaml_model(p, TaskConfig), p.parent


def choose_family(student: StudentConfig, height: int, width: int) -> str:
    """The configured family, or the one fitting the input size."""
    if student.family != "auto":
        return student.family
    return "resnet_cifar" if max(height, width) <= 64 else "mobilenet"
