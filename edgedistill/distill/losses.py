"""Loss terms (registry) and the weighted sum that keeps every term visible in logs."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from edgedistill.registry import Registry

LossFn = Callable[..., torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("ce")
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on hard labels."""
    return F.cross_entropy(logits.float(), labels)


@LOSSES.register("pseudo-label")
def confident_pseudo_label_ce(logits: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """CE against the target's argmax on the rows whose top target probability is ≥ `threshold`, averaged over all
    rows (masked rows count 0; FixMatch's mask). `target` holds class probabilities and gets no gradient.

    Used by FixMatch (target: the weak view's softmax) and by OSTC's ensemble pseudo-labels for C_t. There, without
    the mask an early, near-uniform ensemble hands out arbitrary hard labels that the heads then learn confidently,
    the confidence-weighted ensemble follows them, and C_t collapses to one class (measured: every sub-width C_t
    predicted class 9 after 120 demo steps).
    """
    conf, hard = target.detach().float().max(1)
    per_row = F.cross_entropy(logits.float(), hard, reduction="none")
    return (per_row * (conf >= threshold).to(per_row.dtype)).mean()


@LOSSES.register("kd")
def soft_kl(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(target ‖ softmax(logits / T)) · T², averaged over the batch (Hinton KD)."""
    logp = F.log_softmax(logits.float() / temperature, dim=1)
    return F.kl_div(logp, target_probs.float(), reduction="batchmean") * temperature**2


def kl_rows(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(target ‖ softmax(logits / T)) of every row (no T² factor): what the domain sampler averages per domain."""
    logp = F.log_softmax(logits.float() / temperature, dim=1)
    return F.kl_div(logp, target_probs.float(), reduction="none").sum(1)


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Σ weight·term over the named terms (a term without weight counts 1)."""
    total = sum(weights.get(k, 1.0) * v for k, v in terms.items())
    assert isinstance(total, torch.Tensor), "weighted_sum needs at least one term"
    return total


@LOSSES.register("relational")
def relational_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the batch's pairwise cosine-similarity matrices of student and teacher features (UDON).

    The two feature widths may differ: only the N×N similarity structure is compared.
    """
    s, t = F.normalize(student.float(), dim=1), F.normalize(teacher.float(), dim=1)
    return F.mse_loss(s @ s.T, t @ t.T)
