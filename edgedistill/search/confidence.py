"""How sure a search's choice is: each UPEM's 95% interval over the scoring images, by a seeded paired bootstrap.

Every UPEM is a statistic of the unlabeled scoring images, so redrawing those images with replacement shows how much
the score would move on another draw of the same size, whatever the UPEM's form. The same redraws are used for every
config (paired), so the share of redraws in which the chosen config outscores a runner-up is also known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from edgedistill.search.upem import Outputs, Reference

Config = tuple[float, ...]
RESAMPLES = 200
LEVEL = 0.95


@dataclass(frozen=True)
class Confidence:
    """The bootstrap behind the intervals, and the runner-ups it cannot tell from the chosen config.

    Attributes:
        level: Coverage of each interval (0.95).
        resamples: Bootstrap redraws of the scoring images.
        images: Scoring images per redraw.
        seed: Seed of the redraws.
        chosen_wins: Per runner-up (in order), the share of redraws in which the chosen config scores higher.
        within_noise: Runner-ups whose interval overlaps the chosen config's.
        warning: One line when the closest runner-up is within the noise, else None.
    """

    level: float
    resamples: int
    images: int
    seed: int
    chosen_wins: list[float]
    within_noise: list[Config]
    warning: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"method": "paired bootstrap over the scoring images"}


def _take(out: Outputs, idx: torch.Tensor) -> Outputs:
    heads = None if out.heads is None else {k: v[idx] for k, v in out.heads.items()}
    return Outputs(out.logits[idx], heads)


def bootstrap_scores(
    metric: Callable[[Outputs, Reference], float],
    outputs: Sequence[Outputs],
    reference: Reference,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> torch.Tensor:
    """UPEM of each config on `resamples` seeded redraws of the scoring images: `(configs, resamples)`."""
    n = len(reference.ensemble)
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (resamples, n), generator=g).to(reference.ensemble.device)
    scores = [[metric(_take(o, idx), Reference(reference.ensemble[idx])) for idx in draws] for o in outputs]
    return torch.tensor(scores, dtype=torch.float64)


def interval(point: float, scores: torch.Tensor, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap `scores`, widened to hold the point estimate itself."""
    lo, hi = torch.quantile(scores, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=scores.dtype)).tolist()
    return min(lo, point), max(hi, point)


def _fmt(ci: tuple[float, float]) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}"


def assess(
    configs: Sequence[Config],
    points: Sequence[float],
    scores: torch.Tensor,
    *,
    images: int,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[list[tuple[float, float]], Confidence]:
    """Intervals of the chosen config (first) and its runner-ups, and how often the chosen one wins.

    Args:
        configs: The chosen config, then its runner-ups.
        points: Their UPEM on all the scoring images.
        scores: `bootstrap_scores` of the same configs, same order.
        images: Scoring images (recorded).
        level: Interval coverage.
        seed: The seed `scores` were drawn with (recorded).
    """
    cis = [interval(p, s, level) for p, s in zip(points, scores, strict=True)]
    wins = [float((scores[0] > s).double().mean()) for s in scores[1:]]
    close = [c for c, ci in zip(configs[1:], cis[1:], strict=True) if ci[1] >= cis[0][0] and ci[0] <= cis[0][1]]
    warning = None
    if close:
        i = list(configs).index(close[0])
        warning = (
            f"runner-up {list(close[0])} (UPEM {points[i]:.3f}, {level:.0%} CI {_fmt(cis[i])}) is within the noise of "
            f"the chosen {list(configs[0])} ({points[0]:.3f}, {_fmt(cis[0])}): the chosen one scores higher in "
            f"{wins[i - 1]:.0%} of {scores.shape[1]} redraws of the {images} scoring images"
        )
        if len(close) > 1:
            warning += f" ({len(close)} runner-ups overlap)"
    return cis, Confidence(level, int(scores.shape[1]), images, seed, wins, list(close), warning)
