"""The `teachers rank` stage: task similarity of every teacher of a task, from the labeled split only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgedistill.data import build_task_data
from edgedistill.task import load_task
from edgedistill.teachers.cache import cache_teachers
from edgedistill.teachers.similarity import SIMILARITY, similarity_scores, softmax_weights


@dataclass
class Ranked:
    """One row of the ranking."""

    source: str
    name: str
    feature_dim: int
    scores: dict[str, float]
    alpha: float  # distill-weighted's weight with the task's γ / top-k, on the first metric


def rank_teachers(
    task: Path | None,
    metrics: list[str],
    cache: Path,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> tuple[str, list[Ranked]]:
    """Score every teacher of `task` (None = the demo task) with `metrics`; best first by the first metric.

    Returns:
        (task name, ranked rows).
    """
    for m in metrics:
        SIMILARITY.get(m)  # unknown names fail before any work
    cfg, base = load_task(task)
    data = build_task_data(cfg.data, base)
    assert data.labeled.labels is not None
    cached = cache_teachers(
        [t.source for t in cfg.teachers], {"labeled": data.labeled}, cache, device, base, show_progress
    )
    scores = {m: similarity_scores(cached, data.labeled.labels, m) for m in metrics}
    ms = cfg.train.multisource
    alphas = softmax_weights(np.asarray(scores[metrics[0]]), ms.gamma, ms.top_k)
    rows = [
        Ranked(c.source, c.name, c.feature_dim, {m: scores[m][i] for m in metrics}, float(alphas[i]))
        for i, c in enumerate(cached)
    ]
    return cfg.name, sorted(rows, key=lambda r: -r.scores[metrics[0]])
