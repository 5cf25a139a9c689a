"""Pretrained teachers: sources (registry), input pipelines, output cache, task similarity."""

from edgedistill.teachers import zoo as _zoo  # noqa: F401  (registers timm:, torchvision:, checkpoint:, packaged:)
from edgedistill.teachers.sources import TEACHER_SOURCES, Teacher, load_teacher, parse_source, teacher_logits

__all__ = ["TEACHER_SOURCES", "Teacher", "load_teacher", "parse_source", "teacher_logits"]
