"""Domain samplers (registry) for tasks that span several domains (UDON, docs/method.md).

Each step's unlabeled batch comes from one domain; with labeled domains (`data.domains`) its labeled batch too.
`udon` samples domain d with probability p_d = (1 − ε) · L_d^β / Σ_e L_e^β + ε / D, where L_d is the mean
teacher-vs-student loss of d's last `window` batches, so the domains the student trails most are seen most and
none starves (p_d ≥ ε / D). A domain with no loss yet counts as the worst seen so far, so every domain is tried
early.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from edgedistill.data.images import TaskData
from edgedistill.distill.config import UdonConfig
from edgedistill.errors import ConfigError
from edgedistill.registry import Registry


class DomainSampler:
    """Base: uniform over domains; subclasses reweigh by the losses recorded with `update`."""

    def __init__(self, num_domains: int, beta: float = 1.0, floor: float = 0.1, window: int = 50) -> None:
        if num_domains < 1:
            raise ValueError(f"a domain sampler needs at least one domain, got {num_domains}")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor}")
        self.num_domains, self.beta, self.floor, self.window = num_domains, beta, floor, window
        self.losses: list[deque[float]] = [deque(maxlen=window) for _ in range(num_domains)]

    def probabilities(self) -> np.ndarray:
        """Sampling probability of every domain (sums to 1)."""
        return np.full(self.num_domains, 1.0 / self.num_domains)

    def sample(self, generator: torch.Generator) -> int:
        """Draw a domain index (deterministic given the generator's state)."""
        p = torch.from_numpy(self.probabilities())
        return int(torch.multinomial(p, 1, generator=generator))

    def update(self, domain: int, loss: float) -> None:
        """Record the teacher-vs-student loss of a batch from `domain`."""
        self.losses[domain].append(float(loss))

    def state_dict(self) -> dict[str, Any]:
        return {"losses": [list(d) for d in self.losses]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = [deque(d, maxlen=self.window) for d in state["losses"]]


DOMAIN_SAMPLERS: Registry[type[DomainSampler]] = Registry("domain sampler")
DOMAIN_SAMPLERS.register("uniform")(DomainSampler)


@DOMAIN_SAMPLERS.register("udon")
class LossProportional(DomainSampler):
    """UDON: p_d ∝ (windowed mean loss of d)^β, mixed with the floor ε / D."""

    def probabilities(self) -> np.ndarray:
        means = [float(np.mean(d)) if d else None for d in self.losses]
        seen = [m for m in means if m is not None]
        if not seen:
            return super().probabilities()
        worst = max(seen)
        scores = np.array([max(worst if m is None else m, 0.0) ** self.beta for m in means])
        if scores.sum() <= 0:
            return super().probabilities()
        d = self.num_domains
        return (1.0 - self.floor) * scores / scores.sum() + self.floor / d


DOMAIN_LOSS_KEYS = ("kd", "seed", "seed_sub", "inplace_sub")
"""Logged terms the domain sampler reads (unlabeled domains), first present: teacher-vs-student KD, else the bank's
disagreement. With labeled domains it reads each domain's rows' loss instead (`Distiller.row_losses`)."""


def domain_loss(logs: dict[str, float]) -> float:
    """The loss a step reports to the domain sampler (see DOMAIN_LOSS_KEYS)."""
    return next((logs[k] for k in DOMAIN_LOSS_KEYS if k in logs), 0.0)


def draw_rows(
    gen: torch.Generator, probs: np.ndarray, pools: list[torch.Tensor], n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` rows with their domains drawn from `probs` and their images from the domain's pool (both seeded):
    (indices into the pools' image set, domain of every row), grouped by domain."""
    if n == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    domains = torch.multinomial(torch.from_numpy(probs).float(), n, replacement=True, generator=gen).sort().values
    counts = torch.bincount(domains, minlength=len(pools)).tolist()
    picks = [pool[torch.randint(len(pool), (c,), generator=gen)] for pool, c in zip(pools, counts, strict=True)]
    return torch.cat(picks), domains


def domain_sampler(
    cfg: UdonConfig, domains: np.ndarray | None, num_unlabeled: int
) -> tuple[DomainSampler | None, list[torch.Tensor]]:
    """The configured sampler and each domain's unlabeled-image indices; (None, []) without domains.

    Raises:
        ConfigError: `domains` is not one index >= 0 per unlabeled image, or a domain has no image.
    """
    if domains is None:
        return None, []
    domains = np.asarray(domains)
    if domains.shape != (num_unlabeled,) or domains.min() < 0:
        raise ConfigError(f"domains: need one index >= 0 per unlabeled image ({num_unlabeled}), got {domains.shape}")
    pools = [torch.from_numpy(np.flatnonzero(domains == d)) for d in range(int(domains.max()) + 1)]
    if any(len(p) == 0 for p in pools):
        raise ConfigError("domains: every index 0..D-1 needs at least one unlabeled image")
    return DOMAIN_SAMPLERS.get(cfg.sampler)(len(pools), cfg.beta, cfg.floor, cfg.window), pools


def _pools(index: np.ndarray, count: int, what: str) -> list[torch.Tensor]:
    pools = [torch.from_numpy(np.flatnonzero(index == d)) for d in range(count)]
    empty = [d for d, p in enumerate(pools) if len(p) == 0]
    if empty:
        raise ConfigError(f"domains: domain {empty[0]} has no {what} image")
    return pools


def domain_setup(
    cfg: UdonConfig, data: TaskData, domains: np.ndarray | None, draws_unlabeled: bool
) -> tuple[DomainSampler | None, list[torch.Tensor], list[torch.Tensor]]:
    """The sampler and each domain's unlabeled and labeled image indices.

    With labeled domains (`data.universal`) every step draws from one domain (labeled and unlabeled batches);
    else only the unlabeled batch does, when steps draw unlabeled images and `domains` gives their domains.
    (None, [], []) when no sampling by domain applies.
    """
    if data.universal:
        assert data.domains is not None and data.labeled_domains is not None
        n = len(data.domain_names)
        every = DOMAIN_SAMPLERS.get(cfg.sampler)(n, cfg.beta, cfg.floor, cfg.window)
        return every, _pools(data.domains, n, "unlabeled"), _pools(data.labeled_domains, n, "labeled")
    if not draws_unlabeled:
        return None, [], []
    sampler, pools = domain_sampler(cfg, domains, len(data.unlabeled))
    return sampler, pools, []
