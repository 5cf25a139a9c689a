"""Distillers (registry): which loss terms each sampled width gets in a sandwich step.

Width 0 of a step is always the largest config; only it learns from the teachers. How the sampled widths
teach each other (SEED ensemble or in-place KD from the largest) is the bank loss (`bank_loss.BANK_LOSSES`),
applied by the trainer to distillers with `bank_distillation`. Teacher distillers differ only in how they
weigh the teachers (α) and whether they regress projected features (Borup et al.).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.distill.config import TrainConfig
from edgedistill.distill.losses import LOSSES, confident_pseudo_label_ce, kl_rows
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.online import OnlineTargets
from edgedistill.errors import ConfigError
from edgedistill.registry import Registry
from edgedistill.teachers.similarity import softmax_weights


@dataclass
class StepBatch:
    """One step's student outputs and targets for one sampled width."""

    logits_labeled: torch.Tensor
    labels: torch.Tensor
    logits_unlabeled: torch.Tensor | None = None
    largest_probs: torch.Tensor | None = None  # widths > 0: the largest width's detached softmax (labeled + unlabeled)
    features_unlabeled: torch.Tensor | None = None  # student's pooled features of the unlabeled images
    teacher_probs: list[torch.Tensor] | None = None  # per active teacher: target-class soft labels (unlabeled)
    teacher_features: list[torch.Tensor] | None = None  # per active teacher: L2-normalised features (unlabeled)
    logits_strong: torch.Tensor | None = None  # FixMatch: the unlabeled images' strongly augmented view
    features: torch.Tensor | None = None  # student's pooled features of the labeled + unlabeled images
    online: OnlineTargets | None = None  # the domains' online teachers (udon-online)
    domains: torch.Tensor | None = None  # labeled domains: the domain of every labeled + unlabeled image


class Distiller(nn.Module):
    """Base: cross-entropy on labels; subclasses add distillation terms. Holds any trainable projectors."""

    uses_teachers = False
    optional_teachers = False  # uses the task's external teachers when it lists some, works without
    uses_unlabeled = False
    strong_view = False  # the trainer adds a strongly augmented copy of the unlabeled batch (FixMatch)
    bank_distillation = False  # the trainer adds the bank loss (train.bank.loss) to every sampled width

    def __init__(
        self,
        cfg: TrainConfig,
        teachers: TeacherTargets | None = None,
        student_dim: int = 0,
        domain_classes: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        mask = None
        if domain_classes and len(domain_classes) > 1:  # labeled domains: each row's own classes
            mask = torch.zeros(len(domain_classes), max(max(c) for c in domain_classes) + 1, dtype=torch.bool)
            for d, classes in enumerate(domain_classes):
                mask[d, classes] = True
        self.register_buffer("domain_mask", mask, persistent=False)

    def own_classes(self, logits: torch.Tensor, domains: torch.Tensor | None) -> torch.Tensor:
        """`logits` with every class outside the row's own domain at −inf: with labeled domains each domain has its
        own classifier, as UDON's separate heads (the universal head is their concatenation)."""
        mask = cast(torch.Tensor | None, self.domain_mask)
        if domains is None or mask is None:
            return logits
        return logits.float().masked_fill(~mask[domains[: len(logits)]], float("-inf"))

    @classmethod
    def wants_teachers(cls, listed: bool) -> bool:
        """Whether the task's external teachers must be cached (`listed`: the task lists some)."""
        return cls.uses_teachers or (cls.optional_teachers and listed)

    def online_targets(
        self, features: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor
    ) -> OnlineTargets | None:
        """Online teachers' targets from the largest width's features of the step's labeled + unlabeled rows
        (`domains`: each row's domain); None without online teachers."""
        return None

    def row_losses(self, b: StepBatch) -> torch.Tensor:
        """Width 0's per-row loss that the domain sampler averages per domain (NaN: the row does not count):
        here the labeled rows' cross-entropy."""
        ce = F.cross_entropy(self.own_classes(b.logits_labeled.detach().float(), b.domains), b.labels, reduction="none")
        unlabeled = 0 if b.logits_unlabeled is None else len(b.logits_unlabeled)
        return torch.cat([ce, torch.full((unlabeled,), float("nan"), device=ce.device)])

    @classmethod
    def weigh(cls, scores: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        """Teacher weights α from similarity scores (sum 1; 0 = teacher unused)."""
        return np.full(len(scores), 1.0 / len(scores))

    @property
    def weights(self) -> dict[str, float]:
        c = self.cfg
        return {
            "ce": c.lambda_sup,
            "kd": c.lambda_kd,
            "feat": c.multisource.lambda_feat,
            "inplace": c.lambda_inplace,
            "fixmatch": c.fixmatch.lambda_u,
            "relational": c.udon.lambda_relational,
            "teacher_ce": c.udon.lambda_teacher,
            "kd_ext": c.lambda_kd,
            "relational_ext": c.udon.lambda_relational,
        }

    @property
    def temperature(self) -> float:
        """Softmax temperature of the teachers' soft labels (and of the student in the KD term)."""
        return self.cfg.kd_temperature

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        if width_index == 0 or self.cfg.sup_all_widths:
            return {"ce": LOSSES.get("ce")(self.own_classes(b.logits_labeled, b.domains), b.labels)}
        return {}


DISTILLERS: Registry[type[Distiller]] = Registry("distiller")


@DISTILLERS.register("ce-only")
class CEOnly(Distiller):
    """Labels alone: the baseline every distiller must beat."""


@LOSSES.register("fixmatch")
def fixmatch_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """FixMatch: CE of the strong view against the weak view's hard pseudo-label, only where the weak view's
    confidence reaches `threshold`; averaged over the whole unlabeled batch (masked rows count 0)."""
    return confident_pseudo_label_ce(strong_logits, torch.softmax(weak_logits.detach().float(), dim=1), threshold)


@DISTILLERS.register("fixmatch")
class FixMatch(Distiller):
    """FixMatch (Sohn et al. 2020), the semi-supervised baseline: labels + confidence-thresholded pseudo-labels.

    Every sampled width gets CE on the labeled batch and the FixMatch term on its own weak/strong predictions of
    the unlabeled batch; no teachers. The weak view is the trainer's usual affine augmentation, the strong view
    `data.augment.strong_augment`.
    """

    uses_unlabeled = True
    strong_view = True

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        out = super().terms(width_index, b)
        assert b.logits_unlabeled is not None and b.logits_strong is not None
        out["fixmatch"] = LOSSES.get("fixmatch")(b.logits_unlabeled, b.logits_strong, self.cfg.fixmatch.threshold)
        return out


@LOSSES.register("feat")
def projected_feature_mse(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖normalise(P h) − f‖² per image (f already L2-normalised), averaged over the batch."""
    return (F.normalize(projected.float(), dim=1) - target.float()).pow(2).sum(1).mean()


class TeacherKD(Distiller):
    """Largest width: CE + KD to Σ α_i p_i (+ Σ α_i feature regression); other widths: CE (+ the bank loss).

    KD to the α-mixed soft labels has the same student gradient as Σ α_i KL(p_i ‖ q).
    """

    uses_teachers = True
    uses_unlabeled = True
    bank_distillation = True
    feature_loss = False
    pseudo_labels = "auto"  # default target-class mapping of the teacher outputs

    def __init__(
        self,
        cfg: TrainConfig,
        teachers: TeacherTargets | None = None,
        student_dim: int = 0,
        domain_classes: list[list[int]] | None = None,
    ) -> None:
        super().__init__(cfg, teachers, student_dim, domain_classes)
        if teachers is None:
            raise ConfigError("this distiller needs teachers; the task lists none")
        self.register_buffer("alphas", torch.tensor(teachers.alphas, dtype=torch.float32), persistent=False)
        dims = teachers.dims if self.feature_loss else []
        self.projectors = nn.ModuleList(nn.Linear(student_dim, d) for d in dims)

    def terms(self, width_index: int, b: StepBatch) -> dict[str, torch.Tensor]:
        out = super().terms(width_index, b)
        if width_index != 0:
            return out
        assert b.logits_unlabeled is not None and b.teacher_probs is not None
        alphas = cast(torch.Tensor, self.alphas)  # a registered buffer
        mixed = sum(a * p for a, p in zip(alphas, b.teacher_probs, strict=True))
        out["kd"] = self.kd(b.logits_unlabeled, mixed)
        if self.feature_loss:
            assert b.features_unlabeled is not None and b.teacher_features is not None
            feat = LOSSES.get("feat")
            projectors: nn.ModuleList = self.projectors
            pairs = zip(alphas, projectors, b.teacher_features, strict=True)
            out["feat"] = sum(a * feat(proj(b.features_unlabeled), f) for a, proj, f in pairs)
        return out

    def kd(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Hinton KD at `temperature` (scaled by T²)."""
        return LOSSES.get("kd")(logits, target, self.temperature)

    @property
    def kd_scale(self) -> float:
        """The factor `kd` puts on the KL (T² for Hinton KD)."""
        return self.temperature**2

    def row_losses(self, b: StepBatch) -> torch.Tensor:
        """The unlabeled rows' KD to the α-mixed teachers (labeled rows: NaN)."""
        assert b.logits_unlabeled is not None and b.teacher_probs is not None
        mixed = sum(a * p for a, p in zip(cast(torch.Tensor, self.alphas), b.teacher_probs, strict=True))
        kd = kl_rows(b.logits_unlabeled.detach(), cast(torch.Tensor, mixed), self.temperature) * self.kd_scale
        return torch.cat([torch.full((len(b.labels),), float("nan"), device=kd.device), kd])


@DISTILLERS.register("average-kd")
class AverageKD(TeacherKD):
    """KD to the plain average of all teachers' soft labels (no similarity, no feature term).

    Teachers that predict the task's classes use their own soft labels (the foundation's behaviour).
    """


@DISTILLERS.register("single-kd")
class SingleKD(TeacherKD):
    """KD from one teacher, `train.multisource.teacher` (an index into the task's teacher list)."""

    @classmethod
    def weigh(cls, scores: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        i = cfg.multisource.teacher
        if i >= len(scores):
            raise ConfigError(f"train.multisource.teacher: index {i}, but the task lists {len(scores)} teachers")
        return np.eye(len(scores))[i]


class BorupKD(TeacherKD):
    """Borup et al.'s distillers: KD on the teachers' target-head pseudo-labels + per-teacher feature regression;
    subclasses only choose the teacher weights."""

    feature_loss = True
    pseudo_labels = "head"


@DISTILLERS.register("distill-nearest")
class DistillNearest(BorupKD):
    """DistillNearest: KD + feature regression from the teacher with the highest task similarity."""

    @classmethod
    def weigh(cls, scores: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        return np.eye(len(scores))[int(np.argmax(scores))]


@DISTILLERS.register("distill-weighted")
class DistillWeighted(BorupKD):
    """DistillWeighted: α = softmax(s / γ) over the top-k teachers by similarity; KD + feature regression."""

    @classmethod
    def weigh(cls, scores: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        return softmax_weights(scores, cfg.multisource.gamma, cfg.multisource.top_k)
