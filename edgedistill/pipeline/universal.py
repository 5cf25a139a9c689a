"""The train stage's multi-domain records: universal evaluation and the domain sampler's p_d over time."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgedistill.data import Preprocess, TaskData
from edgedistill.distill.config import TrainConfig, UdonConfig
from edgedistill.distill.evaluate import universal_metrics


def universal_evaluation(
    model: nn.Module, data: TaskData, pre: Preprocess, device: torch.device, cfg: TrainConfig, key: str
) -> dict[str, Any]:
    """{key: per-domain top-1, recall@1, mAP@k} for a task with labeled domains; {} otherwise."""
    if not data.universal:
        return {}
    return {key: universal_metrics(model, data, pre, device, cfg.udon.map_at_k, cfg.eval_batch)}


def domain_sampling(
    udon: UdonConfig, data: TaskData, probabilities: list[float] | None, history: list[dict[str, float]]
) -> dict[str, Any]:
    """The domain sampler's final p_d per domain and p_d at every logged step (mean over the logging window)."""
    if probabilities is None:
        return {}
    names = data.domain_names
    rows = [r for r in history if "p_domain0" in r]
    over_time = {"step": [int(r["step"]) for r in rows]} | {
        name: [round(r[f"p_domain{d}"], 4) for r in rows] for d, name in enumerate(names)
    }
    return {
        "domain_sampling": {
            "sampler": udon.sampler,
            "floor": udon.floor,
            "probabilities": dict(zip(names, probabilities, strict=True)),
            "over_time": over_time,
        }
    }
