"""Measured check of the search's choice: time configs end to end until one fits the latency limit.

First the shortlist, best UPEM first. With an INT8 quality (an INT8 budget: the quantized candidate's agreement with the
FP32 bank ensemble), the whole shortlist is measured and the fitting config with the best INT8 quality is chosen, so the
choice is the best subnet after quantization, not before. Without a latency table nothing predicted which configs are
fast enough, so when the whole shortlist is too slow the search keeps measuring, ordered by the MAC count as a cost
proxy: among the configs with fewer MACs than every config already measured too slow, the best UPEM of those that a MACs
→ latency line through the measurements says fit (else the cheapest). Each miss lowers the MAC bound, so this ends: with
a fitting config, with no cheaper config left, or at the measurement limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgedistill.search.costs import Config, Stats

Measure = Callable[[Config], Stats]
Over = Callable[[Config, Stats], list[str]]  # limits a config exceeds with this latency (empty: it fits)
Quality = Callable[[Config], float]  # label-free quality of the config's INT8 artifact (higher is better)


@dataclass(frozen=True)
class Measured:
    """One measurement: which ranked config (index), its latency, the limits it exceeds, and why it was measured."""

    index: int
    config: Config
    macs: int
    measured_ms: Stats
    over: list[str]
    why: str
    int8_quality: float | None = None

    @property
    def fits(self) -> bool:
        return not self.over

    def to_json(self) -> dict[str, object]:
        return {"config": list(self.config), "macs": self.macs, "measured_ms": self.measured_ms,
                "fits": self.fits, "over": self.over, "why": self.why,
                "int8_quality": self.int8_quality}  # fmt: skip


@dataclass
class Verification:
    """Every measurement in order; `chosen` is the index of the first that fits (None: none did)."""

    log: list[Measured] = field(default_factory=list)
    chosen: int | None = None
    fallback: bool = False  # measured beyond the shortlist
    exhausted: bool = False  # no config cheaper than the cheapest miss was left

    @property
    def misses(self) -> list[Measured]:
        return [m for m in self.log if not m.fits]


def _line(points: list[tuple[int, Stats]]) -> Callable[[int], Stats]:
    """Per statistic, latency as a + b·MACs through the measurements (through 0 and the cheapest, from one point)."""
    fits: dict[str, tuple[float, float]] = {}
    macs = np.array([m for m, _ in points], dtype=float)
    cheapest = int(np.argmin(macs))
    for stat in points[0][1]:
        ms = np.array([s[stat] for _, s in points], dtype=float)
        b, a = np.polyfit(macs, ms, 1) if len(set(macs.tolist())) > 1 else (0.0, 0.0)
        if b <= 0:  # one point, or no trend: proportional to MACs through the cheapest measurement
            b, a = ms[cheapest] / max(macs[cheapest], 1.0), 0.0
        fits[stat] = (float(a), float(b))
    return lambda m: {stat: a + b * m for stat, (a, b) in fits.items()}


def verify(
    ranked: Sequence[tuple[Config, int]],
    measure: Measure,
    over: Over,
    *,
    shortlist: int,
    fallback: bool,
    limit: int,
    quality: Quality | None = None,
) -> Verification:
    """Measure the ranked configs (best UPEM first, with their MACs) until one fits.

    Args:
        ranked: (config, MACs) of every predicted-feasible config, best UPEM first.
        measure: End-to-end latency of a config here.
        over: The limits a config exceeds with a latency (empty when it fits).
        shortlist: Configs measured first, best UPEM first.
        fallback: Keep measuring cheaper configs when the shortlist is too slow (no latency table).
        limit: Configs measured at most in all, the shortlist included.
        quality: INT8 quality of a config (measured right after its latency): the whole shortlist is measured and
            the fitting config with the best quality is chosen (ties: the better UPEM); None: the first that fits.
    """
    v = Verification()

    def attempt(i: int, why: str) -> bool:
        config, macs = ranked[i]
        ms = measure(config)
        score = None if quality is None else quality(config)
        v.log.append(Measured(i, config, macs, ms, over(config, ms), why, score))
        if v.log[-1].fits and v.chosen is None:
            v.chosen = i
        return v.chosen is not None

    top = min(max(1, shortlist), len(ranked))
    for i in range(top):
        if attempt(i, f"shortlist {i + 1}/{top}, by UPEM") and quality is None:
            return v
    fitting = [m for m in v.log if m.fits]
    if fitting:
        v.chosen = max(fitting, key=lambda m: (m.int8_quality or 0.0, -m.index)).index
        return v
    while fallback and len(v.log) < limit:
        bound = min(m.macs for m in v.misses)
        tried = {m.index for m in v.log}
        pool = [i for i, (_, macs) in enumerate(ranked) if i not in tried and macs < bound]
        if not pool:
            v.exhausted = True
            break
        v.fallback = True
        predict = _line([(m.macs, m.measured_ms) for m in v.log])
        likely = [i for i in pool if not over(ranked[i][0], predict(ranked[i][1]))]
        where = f"{len(pool)} unmeasured configs under {bound / 1e6:.2f} M MACs (the cheapest too slow)"
        if likely:
            i, why = likely[0], f"best UPEM of the {len(likely)} of {where} that a MACs → latency line says fit"
        else:
            i = min(pool, key=lambda j: (ranked[j][1], j))
            why = f"cheapest of {where}; the MACs → latency line says none fits"
        if attempt(i, why):
            return v
    return v
