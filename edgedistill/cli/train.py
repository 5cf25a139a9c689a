"""`edgedistill train`: distil the task into a slimmable bank and pick the widths for the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgedistill.budget import DEFAULT_BUDGET
from edgedistill.cli.console import console


def train(
    budget: Annotated[Path, typer.Option(help="device budget YAML")] = DEFAULT_BUDGET,
    task: Annotated[
        Path | None,
        typer.Option(help="task YAML (default: the packaged MNIST demo task up to 64 px, grocery photos above)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/demo"),
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | auto")] = "auto",
    steps: Annotated[int | None, typer.Option(min=1, help="override train.steps")] = None,
    distiller: Annotated[
        str | None,
        typer.Option(
            help="override train.distiller: distill-weighted | distill-nearest | single-kd | average-kd | udon | "
            "udon-online | fixmatch | ce-only"
        ),
    ] = None,
    teacher_cache: Annotated[
        Path | None,
        typer.Option(help="teacher cache folder shared across runs (default: the run's own teachers/ folder)"),
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from the newest checkpoint in --out")] = False,
    overwrite: Annotated[bool, typer.Option(help="delete an existing --out first")] = False,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Train the bank, evaluate each width, choose the widest subnet within the budget."""
    from edgedistill.api.stages import train as train_stage

    s = train_stage(
        budget,
        task,
        out,
        device=device,
        resume=resume,
        overwrite=overwrite,
        steps=steps,
        distiller=distiller,
        teacher_cache=teacher_cache,
        progress=progress,
    )
    if s.rank or s.chosen is None:  # torchrun: rank 0 reports for the job
        return
    con = console()
    table = Table(title=f"{s.task} → {s.family} bank, {s.distiller}, {s.steps} steps on {s.device}")
    table.add_column("uniform width")
    table.add_column("test top-1 %", justify="right")
    for w, acc in s.width_accuracy.items():
        table.add_row(w, f"{acc:.2f}")
    con.print(table)
    if s.teachers:
        tt = Table(title=f"teachers (similarity: {s.similarity})")
        for col in ("teacher", "score", "α", "pseudo-label test %", "cache"):
            tt.add_column(col, justify="left" if col == "teacher" else "right")
        for t in s.teachers:
            pseudo = "-" if t.test_accuracy is None else f"{t.test_accuracy:.2f}"
            hit = {None: "-", True: "hit", False: "computed"}[t.cache_hit]
            tt.add_row(t.source, f"{t.score:.4f}", f"{t.alpha:.3f}", pseudo, hit)
        con.print(tt)
    if s.universal:
        k = s.raw["universal"]["map_k"]
        ut = Table(title="universal evaluation of the chosen subnet (per domain, test split)")
        for col in ("domain", "p_d (final)", "top-1 %", "recall@1 %", f"mAP@{k} %"):
            ut.add_column(col, justify="left" if col == "domain" else "right")
        for name, d in s.universal.items():
            p = s.domain_probabilities.get(name)
            ut.add_row(
                name, "-" if p is None else f"{p:.3f}", f"{d.top1:.2f}", f"{d.recall_at_1:.2f}", f"{d.map_at_k:.2f}"
            )
        con.print(ut)
    c = s.chosen
    top1 = "-" if c.test_accuracy is None else f"{c.test_accuracy:.2f}%"
    con.print(
        f"budget [bold]{s.budget}[/]: chosen widths {list(c.config)} → channels {list(c.channels)}, "
        f"{c.macs / 1e6:.2f} M MACs, {c.params / 1e6:.3f} M params, test top-1 {top1}"
    )
    if s.skipped_images:
        con.print(f"skipped {s.skipped_images} unreadable images (data.on_corrupt: skip), listed in {s.skipped_list}")
    con.print(f"run folder: {s.run} (train {s.train_seconds} s)")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
