"""`edgedistill teachers rank`: how similar each teacher of a task is to the target (labeled split only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgedistill.cli.console import console

teachers_app = typer.Typer(help="Inspect a task's teacher pool.", no_args_is_help=True)


@teachers_app.command("rank")
def rank(
    task: Annotated[Path | None, typer.Option(help="task YAML (default: the embedded MNIST demo task)")] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="similarity metric(s): knn | linear | logme | leep (first one ranks)")
    ] = None,
    cache: Annotated[Path, typer.Option(help="teacher cache folder")] = Path("runs/teacher-cache"),
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | auto")] = "auto",
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Rank the task's teachers by task similarity, with distill-weighted's weight α for each."""
    from edgedistill.api.teachers import rank_teachers

    ranking = rank_teachers(task, metric or None, cache=cache, device=device, progress=progress)
    metrics = ranking.metrics
    table = Table(title=f"teachers of {ranking.task}, ranked by {metrics[0]}")
    for col in ("#", "teacher", "features", *metrics, f"α ({metrics[0]})"):
        table.add_column(col, justify="left" if col == "teacher" else "right")
    for i, r in enumerate(ranking.teachers, 1):
        table.add_row(str(i), r.source, str(r.feature_dim), *(f"{r.scores[m]:.4f}" for m in metrics), f"{r.alpha:.3f}")
    console().print(table)


@teachers_app.command("finetune")
def finetune(
    task: Annotated[Path | None, typer.Option(help="task YAML (default: the embedded MNIST demo task)")] = None,
    teacher: Annotated[
        str, typer.Option(help="best (highest task similarity) | index in the task's list | a source string")
    ] = "best",
    steps: Annotated[int | None, typer.Option(help="training steps (default: the task's train.steps)")] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**32 - 1, help="seed (default: the task's train.seed)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the result as JSON here")] = None,
    cache: Annotated[Path, typer.Option(help="teacher cache folder (for ranking)")] = Path("runs/teacher-cache"),
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | auto")] = "auto",
) -> None:
    """Baseline: fine-tune one pretrained teacher (new target-class head) on the labeled split; print test top-1."""
    from edgedistill.api.teachers import finetune_teacher

    s = finetune_teacher(task, teacher, steps=steps, seed=seed, out=out, cache=cache, device=device)
    score = "" if s.similarity is None else f" (similarity {s.similarity:.4f})"
    console().print(
        f"fine-tuned [bold]{s.source}[/]{score} on {s.labeled} labeled images, {s.steps} steps, "
        f"{s.seconds:.0f} s: test top-1 [bold]{s.test_accuracy:.2f}%[/]" + (f" → {out}" if out else "")
    )


def register(app: typer.Typer) -> None:
    app.add_typer(teachers_app, name="teachers")
