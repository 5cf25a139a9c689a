"""Distillers (registry): which loss terms each sampled width gets in a sandwich step.

Width 0 of a step is always the largest config; its detached soft output is the in-place KD target
of the other widths (US-Nets/OFA in-place distillation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from edgedistill.distill.config import TrainConfig
from edgedistill.distill.losses import LOSSES
from edgedistill.registry import Registry


@dataclass
class StepBatch:
    """One step's student outputs and targets for one sampled width."""

    logits_labeled: torch.Tensor
    labels: torch.Tensor
    logits_unlabeled: torch.Tensor | None
    teacher_probs: torch.Tensor | None  # for the unlabeled images
    largest_probs: torch.Tensor | None  # detached soft output of the largest width (labeled + unlabeled)


class Distiller:
    """Base: cross-entropy on labels; subclasses add distillation terms."""

    uses_teachers = False
    uses_unlabeled = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    @property
    def weights(self) -> dict[str, float]:
        return {"ce": self.cfg.lambda_sup, "kd": self.cfg.lambda_kd, "inplace": self.cfg.lambda_inplace}

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        if width_index == 0 or self.cfg.sup_all_widths:
            return {"ce": LOSSES.get("ce")(b.logits_labeled, b.labels)}
        return {}


DISTILLERS: Registry[Callable[[TrainConfig], Distiller]] = Registry("distiller")


@DISTILLERS.register("ce-only")
class CEOnly(Distiller):
    """Labels alone: the baseline every distiller must beat."""


@DISTILLERS.register("average-kd")
class AverageKD(Distiller):
    """Largest width: CE + KD to the mean teacher soft prediction; others: CE + in-place KD."""

    uses_teachers = True
    uses_unlabeled = True

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        out = super().terms(width_index, b)
        assert b.logits_unlabeled is not None
        if width_index == 0:
            assert b.teacher_probs is not None
            out["kd"] = LOSSES.get("kd")(b.logits_unlabeled, b.teacher_probs, self.cfg.kd_temperature)
        else:
            assert b.largest_probs is not None
            logits = torch.cat([b.logits_labeled, b.logits_unlabeled])
            out["inplace"] = LOSSES.get("kd")(logits, b.largest_probs)
        return out
