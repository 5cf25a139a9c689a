"""Pretrained teachers: sources, input pipelines, predictions."""

from edgedistill.teachers.ensemble import average_soft_labels, teacher_logits
from edgedistill.teachers.sources import TEACHER_SOURCES, Teacher, load_teacher, parse_source

__all__ = ["TEACHER_SOURCES", "Teacher", "average_soft_labels", "load_teacher", "parse_source", "teacher_logits"]
