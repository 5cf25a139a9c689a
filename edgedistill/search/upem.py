"""UPEM: unsupervised performance evaluation metrics that rank width configs from unlabeled target images only.

Registry (SlimDA; docs/method.md): `agreement` with the bank ensemble (default), `entropy` (negative mean prediction
entropy) and `discrepancy` (negative C_s/C_t disagreement; needs a bank with OSTC heads). Higher is better for all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from edgedistill.errors import ConfigError
from edgedistill.models import SlimmableBank, memory_format, recalibrate_bn
from edgedistill.registry import Registry

OSTC_HEADS = ("C_s", "C_t")


@dataclass(frozen=True)
class Outputs:
    """One config's outputs on the unlabeled evaluation images.

    Attributes:
        logits: `(N, C)` of the deployed head.
        heads: Logits of each OSTC head (`C_s`, `C_t`, ...), None for a bank without them.
    """

    logits: torch.Tensor
    heads: Mapping[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class Reference:
    """What configs are compared against: the bank ensemble's class probabilities `(N, C)` on the same images."""

    ensemble: torch.Tensor


Upem = Callable[[Outputs, Reference], float]
UPEMS: Registry[Upem] = Registry("UPEM")


@UPEMS.register("agreement")
def agreement(out: Outputs, ref: Reference) -> float:
    """Top-1 agreement (%) with the ensemble, plus the mean probability given to the ensemble's label as a tie-break.

    The tie-break is worth less than one image of the N (< 100/N points), so it only orders configs whose top-1
    agreement is equal.
    """
    target = ref.ensemble.argmax(1)
    probs = out.logits.float().softmax(1)
    top1 = (probs.argmax(1) == target).float().mean().item() * 100
    soft = probs.gather(1, target[:, None]).mean().item()
    return top1 + 0.99 * soft * 100 / max(1, len(target))


@UPEMS.register("entropy")
def neg_entropy(out: Outputs, ref: Reference) -> float:
    """Negative mean prediction entropy, normalised by log C (0 = every prediction one-hot)."""
    logp = out.logits.float().log_softmax(1)
    h = -(logp.exp() * logp).sum(1).mean().item()
    return -h / math.log(out.logits.shape[1])


@UPEMS.register("discrepancy")
def neg_discrepancy(out: Outputs, ref: Reference) -> float:
    """Negative mean L1 distance between the C_s and C_t class probabilities (SlimDA's UPEM).

    Raises:
        ConfigError: The bank has no C_s/C_t heads.
    """
    if out.heads is None or any(h not in out.heads for h in OSTC_HEADS):
        raise ConfigError("UPEM 'discrepancy' needs a bank with OSTC heads C_s/C_t; use 'agreement' or 'entropy'")
    ps, pt = (out.heads[h].float().softmax(1) for h in OSTC_HEADS)
    return -(ps - pt).abs().sum(1).mean().item()


class ConfigOutputs:
    """Outputs of any config of a bank on fixed unlabeled images, BatchNorm recalibrated per config.

    Each config is run once: the outputs are kept (a few KB each), so the ensemble reference's uniform configs are
    not run again when a strategy scores them.

    Args:
        bank: The slimmable bank (its active config and BN statistics are changed).
        bn_images: Normalised unlabeled images for BN recalibration.
        eval_images: Other normalised unlabeled images the UPEM is computed on.
        batch: Batch size of the BN recalibration (its statistics are per batch: part of the result).
        eval_batch: Batch size of the scored forward passes (eval mode: speed only; small batches stay in cache).
    """

    def __init__(
        self,
        bank: SlimmableBank,
        bn_images: torch.Tensor,
        eval_images: torch.Tensor,
        batch: int = 500,
        eval_batch: int = 100,
    ) -> None:
        self.bank = bank
        fmt = memory_format(bank)  # the bank's layout (channels_last after such training): faster convs
        self.bn = [bn_images[i : i + batch].contiguous(memory_format=fmt) for i in range(0, len(bn_images), batch)]
        e = eval_batch
        self.eval = [eval_images[i : i + e].contiguous(memory_format=fmt) for i in range(0, len(eval_images), e)]
        self.seen: dict[tuple[float, ...], Outputs] = {}

    def __call__(self, config: Sequence[float]) -> Outputs:
        key = tuple(config)
        if key not in self.seen:
            self.seen[key] = self._run(key)
        return self.seen[key]

    def _run(self, config: Sequence[float]) -> Outputs:
        recalibrate_bn(self.bank, self.bn, config=config, max_images=sum(len(b) for b in self.bn))
        self.bank.eval()
        logits, heads = [], []
        with torch.no_grad():
            for x in self.eval:
                feats = self.bank.forward_features(x)
                logits.append(self.bank.forward_head(feats))
                if self.bank.adapt_heads is not None:  # OSTC bank: C_a ("a"), C_s ("s"), C_t ("t")
                    out = self.bank.forward_heads(feats)
                    heads.append({f"C_{k}": v for k, v in out.items()})
        merged = {k: torch.cat([h[k] for h in heads]) for k in heads[0]} if heads else None
        return Outputs(torch.cat(logits), merged)


def ensemble_reference(outputs: Callable[[Sequence[float]], Outputs], configs: Sequence[Sequence[float]]) -> Reference:
    """The bank ensemble: mean class probabilities of `configs` (by default every uniform width)."""
    probs = torch.stack([outputs(c).logits.float().softmax(1) for c in configs])
    return Reference(probs.mean(0))


def uniform_configs(bank: SlimmableBank) -> list[tuple[float, ...]]:
    """Every uniform config of the bank, widest first."""
    return [(w,) * bank.num_stages for w in reversed(bank.width_choices)]
