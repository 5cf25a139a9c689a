"""Width search (registry of strategies). v1: exhaustive enumeration, widest config within the budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from edgedistill.budget.spec import Limits
from edgedistill.errors import BudgetError
from edgedistill.models import SlimmableBank, WidthConfig, bank_cost
from edgedistill.registry import Registry


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


@SEARCH_STRATEGIES.register("exhaustive")
def exhaustive(bank: SlimmableBank, limits: Limits, input_shape: tuple[int, int, int, int]) -> SearchResult:
    """Cost every distinct subnet; pick the one with most MACs (then params) that fits."""
    seen: dict[tuple[int, ...], Candidate] = {}
    for config in bank.all_configs():
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
    return SearchResult("exhaustive", feasible[0], feasible[1:4], len(seen), len(feasible))


def search_widths(
    bank: SlimmableBank, limits: Limits, input_shape: tuple[int, int, int, int], strategy: str = "exhaustive"
) -> SearchResult:
    """Choose the width config for `limits` with the named strategy."""
    return SEARCH_STRATEGIES.get(strategy)(bank, limits, input_shape)
