"""Bank-level distillation (registry): how the K sampled subnets of a step teach each other.

- `seed` (SlimDA SEED, the default): the confidence-weighted, sharpened ensemble of all K sampled nets,
  detached, is the KD target of every sampled net.
- `inplace` (US-Nets/OFA in-place distillation): the largest width's detached soft output is the target of
  the other widths (an ensemble of one, no sharpening).

With the OSTC tri-classifier (`bank.tri_head`), the ensemble is formed from the adaptation heads' outputs
(C_s on labeled, C_t on unlabeled images) and the distillation term goes to the deployed head C_a only;
C_t of the non-largest widths also gets the ensemble's hard pseudo-labels on the unlabeled images where the
ensemble is confident (`bank.pseudo_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from edgedistill.distill.config import BankConfig, TrainConfig
from edgedistill.distill.losses import LOSSES
from edgedistill.registry import Registry

ConfidenceFn = Callable[[torch.Tensor], torch.Tensor]
CONFIDENCE: Registry[ConfidenceFn] = Registry("ensemble weighting")


@CONFIDENCE.register("uniform")
def uniform_confidence(probs: torch.Tensor) -> torch.Tensor:
    """w = 1 for every image."""
    return torch.ones(probs.shape[0], dtype=probs.dtype, device=probs.device)


@CONFIDENCE.register("entropy")
def entropy_confidence(probs: torch.Tensor) -> torch.Tensor:
    """w = 1 − H(p) / log C per image (1: one-hot, 0: uniform)."""
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    return 1.0 - entropy / math.log(probs.shape[1])


@CONFIDENCE.register("max-prob")
def max_prob_confidence(probs: torch.Tensor) -> torch.Tensor:
    """w = max_c p_c per image."""
    return probs.max(1).values


def ensemble(probs: list[torch.Tensor], weighting: str) -> torch.Tensor:
    """p̄ = Σ_k w_k p_k / Σ_k w_k per image, w_k from the registered `weighting` (CONFIDENCE)."""
    conf = CONFIDENCE.get(weighting)
    w = torch.stack([conf(p) for p in probs]).clamp_min(1e-8)  # (K, N); all-uniform predictions still average
    return (w.unsqueeze(-1) * torch.stack(probs)).sum(0) / w.sum(0).unsqueeze(-1)


def sharpen(probs: torch.Tensor, tau: float) -> torch.Tensor:
    """q_c = p_c^(1/τ) / Σ_j p_j^(1/τ) (computed in log space)."""
    return torch.softmax(probs.clamp_min(1e-12).log() / tau, dim=1)


@dataclass
class BankOutputs:
    """One step's outputs of the K sampled widths (index 0 = the largest); logits cover labeled + unlabeled.

    Attributes:
        adapt: Per width, the logits the distiller's terms use (C_a, or C_s/C_t with OSTC); detached here.
        deployed: Per width, the deployed head's logits (C_a), which receive the bank distillation.
        pseudo_head: Per width with OSTC, C_t's logits on the unlabeled images (else None).
        num_labeled: Leading rows that are labeled images.
    """

    adapt: list[torch.Tensor]
    deployed: list[torch.Tensor]
    pseudo_head: list[torch.Tensor] | None
    num_labeled: int


class BankLoss:
    """Base: builds the stop-gradient target from the sampled widths and the per-width terms."""

    key = ""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg: BankConfig = cfg.bank
        self.weights = {"seed": cfg.bank.lambda_seed, "inplace": cfg.lambda_inplace, "pseudo": cfg.bank.lambda_pseudo}

    def target(self, adapt: list[torch.Tensor]) -> torch.Tensor:
        """The detached soft target (N, C) from the adaptation logits of the sampled widths."""
        raise NotImplementedError

    def distilled(self, width_index: int, tri_head: bool) -> bool:
        """Whether width `width_index`'s deployed head gets the distillation term."""
        return True

    def terms(self, out: BankOutputs) -> list[dict[str, torch.Tensor]]:
        """Per sampled width: {key: KD(deployed, target)} and, with OSTC, {"pseudo": CE(C_t, argmax target)}."""
        with torch.no_grad():
            q = self.target([z.detach().float() for z in out.adapt])
        tri = out.pseudo_head is not None
        kd, t = LOSSES.get("kd"), self.cfg.temperature
        result: list[dict[str, torch.Tensor]] = []
        for k, z in enumerate(out.deployed):
            terms = {self.key: kd(z, q, t)} if self.distilled(k, tri) else {}
            if out.pseudo_head is not None and k > 0 and len(q) > out.num_labeled:
                terms["pseudo"] = LOSSES.get("pseudo-label")(
                    out.pseudo_head[k], q[out.num_labeled :], self.cfg.pseudo_threshold
                )
            result.append(terms)
        return result


BANK_LOSSES: Registry[type[BankLoss]] = Registry("bank distillation")


@BANK_LOSSES.register("seed")
class SEED(BankLoss):
    """SlimDA SEED: KL(stop_grad(sharpen(Σ w_k p_k / Σ w_k, τ)) ‖ p_k) for every sampled net k."""

    key = "seed"

    def target(self, adapt: list[torch.Tensor]) -> torch.Tensor:
        probs = [torch.softmax(z / self.cfg.temperature, dim=1) for z in adapt]
        return sharpen(ensemble(probs, self.cfg.weighting), self.cfg.sharpen)


@BANK_LOSSES.register("inplace")
class InPlace(BankLoss):
    """In-place KD: the largest width's detached softmax teaches the others (with OSTC also its own C_a)."""

    key = "inplace"

    def target(self, adapt: list[torch.Tensor]) -> torch.Tensor:
        return torch.softmax(adapt[0] / self.cfg.temperature, dim=1)

    def distilled(self, width_index: int, tri_head: bool) -> bool:
        return width_index > 0 or tri_head
