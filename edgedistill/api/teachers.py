"""Teacher pool and budget files as Python calls: `rank_teachers`, `finetune_teacher`, `budgets`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgedistill.api.results import BudgetEntry, BudgetList, FinetuneResult, RankedTeacher, TeacherRanking
from edgedistill.api.validate import PathArg, as_path, strict_args
from edgedistill.errors import EdgedistillError

ALL_METRICS = ("knn", "linear", "logme", "leep")
TEACHER_CACHE = "runs/teacher-cache"


@strict_args
def rank_teachers(
    task: PathArg | None = None,
    similarity: str | Sequence[str] | None = None,
    *,
    cache: PathArg = TEACHER_CACHE,
    device: str = "auto",
    progress: bool = False,
) -> TeacherRanking:
    """Rank the task's teachers by task similarity (`similarity`: one metric or several, the first ranks; None: all).

    Only the labeled split is used. Each row carries distill-weighted's weight α on the first metric.
    """
    from edgedistill.distill.amp import resolve_device
    from edgedistill.pipeline.rank import rank_teachers as rank

    metrics = [similarity] if isinstance(similarity, str) else list(similarity or ALL_METRICS)
    name, rows = rank(as_path(task), metrics, Path(cache), resolve_device(device), show_progress=progress)
    teachers = tuple(RankedTeacher(r.source, r.name, r.feature_dim, dict(r.scores), r.alpha) for r in rows)
    return TeacherRanking(task=name, metrics=tuple(metrics), teachers=teachers)


@strict_args
def finetune_teacher(
    task: PathArg | None = None,
    teacher: str | int = "best",
    *,
    steps: int | None = None,
    seed: int | None = None,
    out: PathArg | None = None,
    cache: PathArg = TEACHER_CACHE,
    device: str = "auto",
) -> FinetuneResult:
    """Baseline: fine-tune one pretrained teacher (new head) on the labeled split and test it.

    `teacher`: "best" (highest task similarity), an index into the task's teacher list, or a source string.
    """
    from edgedistill.distill.amp import resolve_device
    from edgedistill.pipeline.finetune import finetune_run

    s = finetune_run(
        as_path(task),
        str(teacher),
        as_path(out),
        steps=steps,
        seed=seed,
        device=resolve_device(device),
        cache=Path(cache),
    )
    return FinetuneResult(
        raw=s,
        task=s["task"],
        source=s["source"],
        similarity=s["similarity"],
        labeled=int(s["data"]["labeled"]),
        steps=int(s["steps"]),
        seconds=float(s["seconds"]),
        test_accuracy=float(s["test_accuracy"]),
        out=as_path(out),
    )


@strict_args
def budgets(path: PathArg = "budgets") -> BudgetList:
    """Load every budget file in `path` (a folder or one file); invalid ones carry their error instead.

    Raises:
        ConfigError: `path` does not exist or holds no budget files.
    """
    from edgedistill.budget import find_budgets, load_budget

    entries = []
    for f in find_budgets(Path(path)):
        try:
            entries.append(BudgetEntry(path=f, budget=load_budget(f)))
        except EdgedistillError as e:
            entries.append(BudgetEntry(path=f, error=str(e)))
    return BudgetList(path=Path(path), entries=tuple(entries))
