"""`teachers finetune`: the fine-tune-a-teacher baseline on a task (best teacher by similarity, or a chosen one)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgedistill.data import build_task_data
from edgedistill.distill.finetune import finetune_teacher
from edgedistill.errors import ConfigError
from edgedistill.io import atomic_write_json
from edgedistill.options import opt, param
from edgedistill.outputs import check_replace, json_marked
from edgedistill.pipeline.rank import rank_teachers
from edgedistill.task import load_task


def pick_teacher(task: Path | None, teacher: str, cache: Path, device: torch.device) -> tuple[str, float | None]:
    """(teacher source, its similarity score) for `teacher` = "best" (highest task similarity under the task's
    metric), an index into the task's teacher list, or a source string."""
    cfg, _ = load_task(task)
    sources = [t.source for t in cfg.teachers]
    if teacher == "best":
        if not sources:
            raise ConfigError(f"task '{cfg.name}' lists no teachers; pass {opt('teacher', 'SOURCE', meta=True)}")
        _, rows = rank_teachers(task, [cfg.train.multisource.similarity], cache, device, show_progress=False)
        return rows[0].source, rows[0].scores[cfg.train.multisource.similarity]
    if teacher.isdigit():
        i = int(teacher)
        if i >= len(sources):
            raise ConfigError(
                f"{opt('teacher', teacher)}: the task lists {len(sources)} teachers (0..{len(sources) - 1})"
            )
        return sources[i], None
    return teacher, None


def finetune_run(
    task: Path | None,
    teacher: str = "best",
    out: Path | None = None,
    *,
    steps: int | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    cache: Path = Path("runs/teacher-cache"),
) -> dict[str, Any]:
    """Fine-tune one teacher of `task` on its labeled split and test it; written to `out` (JSON) when given."""
    dev = torch.device(device)
    if out is not None:
        check_replace(out, param("out"), json_marked("created_by", "edgedistill"))
    cfg, base = load_task(task)
    source, score = pick_teacher(task, teacher, cache, dev)
    updates = {k: v for k, v in {"steps": steps, "seed": seed}.items() if v is not None}
    train = cfg.train.model_copy(update=updates)
    data = build_task_data(cfg.data, base)
    result = finetune_teacher(source, data, train, dev, base)
    summary = {"created_by": "edgedistill", "task": cfg.name, "data": data.summary(), "similarity": score} | asdict(
        result
    )
    if out is not None:
        atomic_write_json(out, summary)
    return summary
