"""Online domain teachers (UDON): one small teacher per domain on the student's own backbone, trained jointly.

Each teacher reads the pooled features of the step's largest sampled width (width 0 of the sandwich), projects them
to an L2-normalised embedding and classifies it with a cosine classifier over its domain's classes. Its
cross-entropy on the domain's labels trains it and, through the shared features, the backbone; its detached soft
labels and embedding are what the universal head of every sampled width distils from (`udon-online` distiller).
A step may mix domains: every row goes to its own domain's teacher. Teachers live in the distiller, not in the
bank: `extract` and `export` never see them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.distill.losses import LOSSES, kl_rows
from edgedistill.models.slimmable import CosineLinear
from edgedistill.registry import Registry


class DomainTeacher(nn.Module):
    """projection → L2-normalised embedding → cosine classifier (logits = 16 · cos)."""

    def __init__(self, projection: nn.Module, dim: int, num_classes: int) -> None:
        super().__init__()
        self.projection = projection
        self.classifier = CosineLinear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, logits) of pooled backbone features."""
        embedding = F.normalize(self.projection(features), dim=1)
        return embedding, self.classifier(embedding)


TeacherBuilder = Callable[[int, int, int], DomainTeacher]
"""(backbone feature width, embedding width, domain classes) → a domain teacher."""

DOMAIN_TEACHERS: Registry[TeacherBuilder] = Registry("domain teacher")


@DOMAIN_TEACHERS.register("head")
def linear_head(features: int, dim: int, classes: int) -> DomainTeacher:
    """A linear projection of the backbone features (UDON's teacher projection)."""
    return DomainTeacher(nn.Linear(features, dim), dim, classes)


@DOMAIN_TEACHERS.register("branch")
def mlp_branch(features: int, dim: int, classes: int) -> DomainTeacher:
    """A small branch: Linear → ReLU → Linear, for domains that need more capacity than a projection."""
    branch = nn.Sequential(nn.Linear(features, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))
    return DomainTeacher(branch, dim, classes)


@dataclass
class DomainGroup:
    """The rows of one domain in a step and its teacher's detached targets for them.

    Attributes:
        rows: Row indices into the step's labeled + unlabeled images.
        classes: Universal class indices of the domain, in the teacher's label order.
        probs: softmax(teacher logits / T) over the domain's classes.
        embeddings: The teacher's L2-normalised embeddings.
    """

    rows: torch.Tensor
    classes: torch.Tensor
    probs: torch.Tensor
    embeddings: torch.Tensor


@dataclass
class OnlineTargets:
    """One step's domain-teacher outputs: a group per domain present, and the teachers' own loss terms
    ({"teacher_ce": CE on the labeled rows}, with their graph)."""

    groups: list[DomainGroup]
    terms: dict[str, torch.Tensor]

    def kd(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """Row-weighted mean over groups of KL(teacher ‖ softmax(logits[rows, classes] / T)) (plain KL, no T²)."""
        kd = LOSSES.get("kd")
        terms = [len(g.rows) * kd(logits[g.rows][:, g.classes], g.probs, temperature) for g in self.groups]
        return torch.stack(terms).sum() / (len(logits) * temperature**2)

    def relational(self, features: torch.Tensor) -> torch.Tensor:
        """Row-weighted mean over groups of the relational MSE between `features` and the teacher's embeddings."""
        rel = LOSSES.get("relational")
        terms = [len(g.rows) * rel(features[g.rows], g.embeddings) for g in self.groups]
        return torch.stack(terms).sum() / len(features)

    def kd_rows(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """Per row, the KL of `kd` (what the domain sampler reads)."""
        out = torch.full((len(logits),), float("nan"), device=logits.device)
        for g in self.groups:
            out[g.rows] = kl_rows(logits[g.rows][:, g.classes].detach(), g.probs, temperature)
        return out


class DomainTeachers(nn.Module):
    """The per-domain teachers of a task and the mapping from universal labels to each domain's own labels."""

    def __init__(self, kind: str, features: int, dim: int, domain_classes: list[list[int]]) -> None:
        super().__init__()
        build = DOMAIN_TEACHERS.get(kind)
        self.heads = nn.ModuleList(build(features, dim, len(c)) for c in domain_classes)
        num_classes = max(max(c) for c in domain_classes) + 1
        for d, classes in enumerate(domain_classes):
            local = torch.full((num_classes,), -1, dtype=torch.long)
            local[torch.tensor(classes)] = torch.arange(len(classes))
            self.register_buffer(f"classes_{d}", torch.tensor(classes, dtype=torch.long), persistent=False)
            self.register_buffer(f"local_{d}", local, persistent=False)

    def targets(
        self, features: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor, temperature: float
    ) -> OnlineTargets:
        """Every row's own domain teacher on `features` (the labeled rows first, with `labels` in universal classes;
        `domains`: the domain of every row)."""
        n = len(labels)
        groups, ce = [], torch.zeros((), device=features.device)
        for d in domains.unique().tolist():
            rows = torch.nonzero(domains == d).squeeze(1)
            embedding, logits = self.heads[d](features[rows].float())
            labeled = rows < n
            if bool(labeled.any()):
                local: torch.Tensor = getattr(self, f"local_{d}")[labels[rows[labeled]]]
                if bool((local < 0).any()):
                    raise ValueError(f"a labeled image of domain {d} has a class of another domain")
                ce = ce + F.cross_entropy(logits[labeled], local, reduction="sum")
            probs = torch.softmax(logits.detach() / temperature, dim=1)
            groups.append(DomainGroup(rows, getattr(self, f"classes_{d}"), probs, embedding.detach()))
        return OnlineTargets(groups, {"teacher_ce": ce / max(n, 1)})
