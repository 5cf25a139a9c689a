"""UPEM: unsupervised performance evaluation metrics that rank width configs from unlabeled target images only.

Registry (SlimDA; docs/method.md): `agreement-widest` (default: top-1 agreement with the widest config, the bank's
teacher), `agreement` (with the ensemble of the uniform widths), `entropy` (negative mean prediction entropy) and
`discrepancy` (negative C_s/C_t disagreement; needs a bank with OSTC heads). Higher is better for all. Each entry is a
`Upem`: its score, and which configs of the bank make the reference it scores against. Why the widest config and
not the ensemble: `bench/search_quality_report.py` (docs/results.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from edgedistill.errors import ConfigError
from edgedistill.models import SlimmableBank, memory_format, recalibrate_bn
from edgedistill.models.bn import PIXELS_PER_EVAL_BATCH, bn_batches, images_per_batch
from edgedistill.progress import progress
from edgedistill.registry import Registry

OSTC_HEADS = ("C_s", "C_t")
Config = tuple[float, ...]


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
    """What configs are compared against: the reference configs' mean class probabilities `(N, C)` on the same
    images (the widest config's for `agreement-widest`, the uniform widths' for `agreement`)."""

    ensemble: torch.Tensor


def uniform_members(width_choices: Sequence[float], stages: int) -> list[Config]:
    """Every uniform config, widest first."""
    return [(w,) * stages for w in sorted(width_choices, reverse=True)]


def widest_member(width_choices: Sequence[float], stages: int) -> list[Config]:
    """The widest config alone: the bank's teacher in training and its most accurate member."""
    return [(max(width_choices),) * stages]


Score = Callable[[Outputs, Reference], float]
Members = Callable[[Sequence[float], int], list[Config]]


@dataclass(frozen=True)
class Upem:
    """A registered UPEM: called as `upem(outputs, reference)`, higher is better.

    Attributes:
        score: The metric.
        members: The configs (from the bank's width choices and stage count) whose mean class probabilities make the
            reference.
        about: One line for docs and records.
    """

    score: Score
    members: Members = uniform_members
    about: str = ""

    def __call__(self, out: Outputs, ref: Reference) -> float:
        return self.score(out, ref)

    def reference(self, outputs: Callable[[Config], Outputs], width_choices: Sequence[float], stages: int) -> Reference:
        """The reference: mean class probabilities of `members`."""
        return ensemble_reference(outputs, self.members(width_choices, stages))


UPEMS: Registry[Upem] = Registry("UPEM")


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


def neg_entropy(out: Outputs, ref: Reference) -> float:
    """Negative mean prediction entropy, normalised by log C (0 = every prediction one-hot)."""
    logp = out.logits.float().log_softmax(1)
    h = -(logp.exp() * logp).sum(1).mean().item()
    return -h / math.log(out.logits.shape[1])


def neg_discrepancy(out: Outputs, ref: Reference) -> float:
    """Negative mean L1 distance between the C_s and C_t class probabilities (SlimDA's UPEM).

    Raises:
        ConfigError: The bank has no C_s/C_t heads.
    """
    if out.heads is None or any(h not in out.heads for h in OSTC_HEADS):
        raise ConfigError(
            "UPEM 'discrepancy' needs a bank with OSTC heads C_s/C_t; use 'agreement-widest', 'agreement' or 'entropy'"
        )
    ps, pt = (out.heads[h].float().softmax(1) for h in OSTC_HEADS)
    return -(ps - pt).abs().sum(1).mean().item()


UPEMS.register("agreement")(Upem(agreement, about="top-1 agreement with the mean probabilities of the uniform widths"))
UPEMS.register("agreement-widest")(Upem(agreement, widest_member, about="top-1 agreement with the widest config"))
UPEMS.register("entropy")(Upem(neg_entropy, about="negative mean normalised prediction entropy"))
UPEMS.register("discrepancy")(Upem(neg_discrepancy, about="negative L1 distance of the C_s and C_t heads"))


class ConfigOutputs:
    """Outputs of any config of a bank on fixed unlabeled images, BatchNorm recalibrated per config.

    Each config is run once: the outputs are kept (a few KB each), so the ensemble reference's uniform configs are
    not run again when a strategy scores them.

    Args:
        bank: The slimmable bank (its active config and BN statistics are changed).
        bn_images: Normalised unlabeled images for BN recalibration.
        eval_images: Other normalised unlabeled images the UPEM is computed on.
        batch: Batch size of the BN recalibration (its statistics are per batch: part of the result); None: 500
            images up to 64 px, fewer above (`images_per_batch`: bounded memory).
        eval_batch: Batch size of the scored forward passes (eval mode: speed only; small batches stay in cache);
            None: 100 images up to 64 px, fewer above.
    """

    def __init__(
        self,
        bank: SlimmableBank,
        bn_images: torch.Tensor,
        eval_images: torch.Tensor,
        batch: int | None = None,
        eval_batch: int | None = None,
    ) -> None:
        self.bank = bank
        fmt = memory_format(bank)  # the bank's layout (channels_last after such training): faster convs
        self.bn = [b.contiguous(memory_format=fmt) for b in bn_batches(bn_images, batch)]
        h, w = eval_images.shape[-2], eval_images.shape[-1]
        e = eval_batch or images_per_batch(h, w, PIXELS_PER_EVAL_BATCH, 100)
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


def ensemble_reference(outputs: Callable[[Config], Outputs], configs: Sequence[Config]) -> Reference:
    """The bank ensemble: mean class probabilities of `configs` (by default every uniform width)."""
    probs = torch.stack([outputs(c).logits.float().softmax(1) for c in configs])
    return Reference(probs.mean(0))


def uniform_configs(bank: SlimmableBank) -> list[tuple[float, ...]]:
    """Every uniform config of the bank, widest first."""
    return uniform_members(bank.width_choices, bank.num_stages)


def timed_reference(metric: Upem, outputs: ConfigOutputs, show_progress: bool = False) -> tuple[Reference, float]:
    """`metric`'s reference, and the seconds one score takes, timed on the uniform widths.

    Every search runs the uniform widths first (the default reference, and the strategies' first candidates), so
    the time of one score (BN recalibration + outputs) is measured there whatever the UPEM's reference is.
    `show_progress`: a line per width (at 224 px each takes tens of seconds on 2 CPU cores).
    """
    bank = outputs.bank
    uniform = uniform_configs(bank)
    start = time.perf_counter()
    with progress("search: uniform widths", len(uniform), show=show_progress, unit="config", every_pct=1) as bar:
        for config in uniform:
            outputs(config)
            bar.advance()
    per_score = (time.perf_counter() - start) / len(uniform)
    return metric.reference(outputs, bank.width_choices, bank.num_stages), per_score
