"""One sandwich step's loss: every sampled width forward, the distiller's and the bank's terms, one total."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from edgedistill.distill.amp import autocast
from edgedistill.distill.bank_loss import BankLoss, BankOutputs
from edgedistill.distill.distillers import Distiller, StepBatch
from edgedistill.distill.losses import weighted_sum
from edgedistill.models import SlimmableBank, WidthConfig


def micro_batches(labeled: int, unlabeled: int, micro_batch: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(labeled rows, unlabeled rows) of each micro-batch of a step: interleaved, so every chunk has both kinds.

    One chunk when `micro_batch` is None or the step fits in it. Smaller forward/backward passes are cheaper per image
    on CPUs at large inputs (the activations stay in cache) and need less memory; gradients are accumulated.
    """
    total = labeled + unlabeled
    chunks = 1 if micro_batch is None else math.ceil(total / micro_batch)
    chunks = max(1, min(chunks, *(n for n in (labeled, unlabeled) if n > 0)))
    return [(torch.arange(labeled)[c::chunks], torch.arange(unlabeled)[c::chunks]) for c in range(chunks)]


Forward = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def step_loss(
    bank: SlimmableBank,
    forward: Forward,
    distiller: Distiller,
    bank_loss: BankLoss | None,
    configs: list[WidthConfig],
    x: torch.Tensor,
    labels: torch.Tensor,
    num_unlabeled: int,
    teacher_probs: list[torch.Tensor] | None,
    teacher_feats: list[torch.Tensor] | None,
    amp: tuple[torch.device, torch.dtype | None],
) -> tuple[torch.Tensor, dict[str, float]]:
    """One sandwich step's loss over the sampled `configs` (first = largest) and its per-term logs.

    Every sampled width runs forward first (its graph kept), so the bank loss can use the ensemble of all
    of them; the caller backpropagates the returned total once. `x` holds the labeled images, then
    `num_unlabeled` unlabeled ones, then (FixMatch) their strongly augmented copies. Per width: the
    distiller's terms on the adaptation logits (C_a, or C_s on labeled / C_t on unlabeled images with OSTC)
    plus the bank loss's terms; the total is their weighted sum averaged over the K widths.
    """
    n = len(labels)
    feats, adapt, deployed, pseudo = [], [], [], []
    for config in configs:
        bank.set_config(config)
        with autocast(*amp):
            f, heads = forward(x)
        heads = {k: v.float() for k, v in heads.items()}
        feats.append(f.float())
        deployed.append(heads["a"])
        if "s" in heads:
            adapt.append(torch.cat([heads["s"][:n], heads["t"][n:]]))
            pseudo.append(heads["t"][n:])
        else:
            adapt.append(heads["a"])
    bank_terms: list[dict[str, torch.Tensor]] = [{} for _ in configs]
    if bank_loss is not None:
        bank_terms = bank_loss.terms(BankOutputs(adapt, deployed, pseudo or None, n))
    weights = distiller.weights | (bank_loss.weights if bank_loss is not None else {})
    u = n + num_unlabeled  # rows after `u`: the strong view of the unlabeled images (FixMatch)
    largest = torch.softmax(adapt[0][:u].detach(), dim=1)
    total = torch.zeros((), device=x.device)
    logs: dict[str, float] = {}
    for i, z in enumerate(adapt):
        b = StepBatch(
            z[:n],
            labels,
            z[n:u] if num_unlabeled else None,
            largest if i else None,
            feats[i][n:u] if num_unlabeled else None,
            teacher_probs,
            teacher_feats,
            z[u:] if len(z) > u else None,
        )
        terms = distiller.terms(i, b) | bank_terms[i]
        total = total + weighted_sum(terms, weights) / len(configs)
        for k, v in terms.items():
            logs[f"{k}{'' if i == 0 else '_sub'}"] = logs.get(k, 0.0) + float(v.detach())
    return total, logs
