"""The UDON distillers (docs/method.md): `udon` (frozen external teachers) and `udon-online` (online domain
teachers on the student's backbone). Registered in `DISTILLERS` when `edgedistill.distill` is imported."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distillers import DISTILLERS, Distiller, StepBatch, TeacherKD
from edgedistill.distill.losses import LOSSES
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.online import DomainTeachers, OnlineTargets
from edgedistill.errors import ConfigError
from edgedistill.teachers.similarity import softmax_weights


@DISTILLERS.register("udon")
class UDON(TeacherKD):
    """UDON (multi-teacher online distillation): low-temperature logit KD (`train.udon.temperature`, plain KL,
    no T² scaling) plus a relational term: Σ α_i MSE between the pairwise cosine similarities of the student's
    and teacher i's features on the unlabeled batch. α = softmax(s / γ) as in distill-weighted. Pairs with the
    domain sampler when the unlabeled pool has several domains (`data.extra_unlabeled`, `distill(..., domains=...)`)."""

    pseudo_labels = "head"

    @classmethod
    def weigh(cls, scores: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        return softmax_weights(scores, cfg.multisource.gamma, cfg.multisource.top_k)

    @property
    def temperature(self) -> float:
        return self.cfg.udon.temperature

    def kd(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LOSSES.get("kd")(logits, target, self.temperature) / self.temperature**2

    @property
    def kd_scale(self) -> float:
        return 1.0

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        out = super().terms(width_index, b)
        if width_index == 0:
            assert b.features_unlabeled is not None and b.teacher_features is not None
            alphas = cast(torch.Tensor, self.alphas)
            rel = LOSSES.get("relational")
            out["relational"] = sum(
                a * rel(b.features_unlabeled, f) for a, f in zip(alphas, b.teacher_features, strict=True)
            )
        return out


@DISTILLERS.register("udon-online")
class UDONOnline(Distiller):
    """UDON with online domain teachers (`distill/online.py`): per domain a teacher on the shared backbone, trained
    with CE on the domain's labels (`udon.lambda_teacher`) from the largest width's features; every sampled
    width's universal head gets CE, KD to the step domain's teacher over that domain's classes (plain KL at
    `udon.online_temperature`) and the relational term against the teacher's embedding, on the labeled and
    unlabeled images of the step. External teachers listed by the task add the `udon` distiller's terms
    (`kd_ext`, `relational_ext`) on the largest width. A task without `data.domains` is one domain."""

    optional_teachers = True
    uses_unlabeled = True

    def __init__(
        self,
        cfg: TrainConfig,
        teachers: TeacherTargets | None = None,
        student_dim: int = 0,
        domain_classes: list[list[int]] | None = None,
    ) -> None:
        super().__init__(cfg, teachers, student_dim, domain_classes)
        if not domain_classes:
            raise ConfigError("udon-online: needs the task's classes per domain (one list for a one-domain task)")
        u = cfg.udon
        self.domain_teachers = DomainTeachers(u.teacher, student_dim, u.teacher_dim, domain_classes)
        self.external = UDON(cfg, teachers, student_dim) if teachers is not None else None

    pseudo_labels = UDON.pseudo_labels
    weigh = UDON.weigh  # external teachers: α as in `udon`
    temperature = UDON.temperature  # external teachers' soft labels: `udon.temperature`

    def online_targets(self, features: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor) -> OnlineTargets:
        return self.domain_teachers.targets(features, labels, domains, self.cfg.udon.online_temperature)

    @staticmethod
    def _logits(b: StepBatch) -> torch.Tensor:
        return b.logits_labeled if b.logits_unlabeled is None else torch.cat([b.logits_labeled, b.logits_unlabeled])

    def row_losses(self, b: StepBatch) -> torch.Tensor:
        """Every row's KL to its domain teacher."""
        assert b.online is not None
        return b.online.kd_rows(self._logits(b), self.cfg.udon.online_temperature)

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        out = super().terms(width_index, b)
        assert b.online is not None and b.features is not None
        out["kd"] = b.online.kd(self._logits(b), self.cfg.udon.online_temperature)
        out["relational"] = b.online.relational(b.features)
        if width_index == 0:
            out |= b.online.terms
            if self.external is not None:
                ext = self.external.terms(0, b)
                out |= {"kd_ext": ext["kd"], "relational_ext": ext["relational"]}
        return out
