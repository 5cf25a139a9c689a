"""Width search (registry of strategies): the widest config within the budget's MACs/params.

v1 strategies: exhaustive enumeration, seeded random sampling for large spaces, and `auto` choosing between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from edgedistill.budget.spec import Limits
from edgedistill.errors import BudgetError
from edgedistill.models import SlimmableBank, WidthConfig, bank_cost
from edgedistill.registry import Registry

EXHAUSTIVE_LIMIT = 1024  # configs; costing one extracted net takes ~10-150 ms on a CPU
RANDOM_SAMPLES = 200


@dataclass(frozen=True)
class Candidate:
    """One width config with its cost."""

    config: WidthConfig
    channels: list[int]
    macs: int
    params: int

    def fits(self, limits: Limits) -> bool:
        """Within the MAC and parameter limits (latency is checked by `bench`)."""
        ok_macs = limits.macs_m is None or self.macs <= limits.macs_m * 1e6
        ok_params = limits.params_m is None or self.params <= limits.params_m * 1e6
        return ok_macs and ok_params


@dataclass(frozen=True)
class SearchResult:
    """Chosen config, its runner-ups and how many configs were considered."""

    strategy: str
    chosen: Candidate
    runner_ups: list[Candidate]
    evaluated: int
    feasible: int

    def to_json(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "chosen": asdict(self.chosen),
            "runner_ups": [asdict(c) for c in self.runner_ups],
            "evaluated": self.evaluated,
            "feasible": self.feasible,
        }


Strategy = Callable[[SlimmableBank, Limits, tuple[int, int, int, int]], SearchResult]
SEARCH_STRATEGIES: Registry[Strategy] = Registry("search strategy")


def _describe(limits: Limits) -> str:
    parts = [
        f"macs_m ≤ {limits.macs_m}" if limits.macs_m else "",
        f"params_m ≤ {limits.params_m}" if limits.params_m else "",
    ]
    return ", ".join(p for p in parts if p) or "no limits"


def _widest_fitting(
    name: str,
    bank: SlimmableBank,
    configs: Iterable[WidthConfig],
    limits: Limits,
    input_shape: tuple[int, int, int, int],
) -> SearchResult:
    """Cost each distinct subnet among `configs`; pick the one with most MACs (then params) that fits."""
    seen: dict[tuple[int, ...], Candidate] = {}
    for config in configs:
        key = tuple(bank.slot_channels(config).values())
        if key in seen:  # rounding makes some configs the same subnet
            continue
        cost = bank_cost(bank, config, input_shape)
        seen[key] = Candidate(config, bank.stage_channels(config), cost.macs, cost.params)
    feasible = sorted((c for c in seen.values() if c.fits(limits)), key=lambda c: (c.macs, c.params), reverse=True)
    if not feasible:
        smallest = min(seen.values(), key=lambda c: c.macs)
        raise BudgetError(
            f"no width config fits the budget ({_describe(limits)}); the smallest subnet has "
            f"{smallest.macs / 1e6:.2f} M MACs and {smallest.params / 1e6:.3f} M params"
        )
    return SearchResult(name, feasible[0], feasible[1:4], len(seen), len(feasible))


@SEARCH_STRATEGIES.register("exhaustive")
def exhaustive(bank: SlimmableBank, limits: Limits, input_shape: tuple[int, int, int, int]) -> SearchResult:
    """Every config of the bank."""
    return _widest_fitting("exhaustive", bank, bank.all_configs(), limits, input_shape)


@SEARCH_STRATEGIES.register("random")
def random_sample(
    bank: SlimmableBank,
    limits: Limits,
    input_shape: tuple[int, int, int, int],
    samples: int = RANDOM_SAMPLES,
    seed: int = 0,
) -> SearchResult:
    """All uniform configs plus `samples` seeded random ones (for spaces too large to enumerate)."""
    gen = torch.Generator().manual_seed(seed)
    uniform = [(w,) * bank.num_stages for w in bank.width_choices]
    sampled = [bank.sample_config(gen) for _ in range(samples)]
    return _widest_fitting(f"random({samples}, seed {seed})", bank, uniform + sampled, limits, input_shape)


@SEARCH_STRATEGIES.register("auto")
def auto(bank: SlimmableBank, limits: Limits, input_shape: tuple[int, int, int, int]) -> SearchResult:
    """Exhaustive when the space has at most `EXHAUSTIVE_LIMIT` configs, else random sampling."""
    space = len(bank.width_choices) ** bank.num_stages
    strategy = exhaustive if space <= EXHAUSTIVE_LIMIT else random_sample
    return strategy(bank, limits, input_shape)


def search_widths(
    bank: SlimmableBank, limits: Limits, input_shape: tuple[int, int, int, int], strategy: str = "auto"
) -> SearchResult:
    """Choose the width config for `limits` with the named strategy."""
    return SEARCH_STRATEGIES.get(strategy)(bank, limits, input_shape)
