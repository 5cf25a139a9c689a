"""`search_widths`: budget → width config. Feasible by predicted cost, ranked by a UPEM, verified by measurement.

1. Cost models reject configs over the budget's MACs/params and, with a latency table, predicted latency.
2. A strategy scores feasible configs with the UPEM on unlabeled target images (BN recalibrated per config).
3. The best-scored configs are measured end to end, best first, when the runtime is here; the first whose
   measured latency fits with a 5% margin is chosen, so a chosen config does not violate the budget when measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from edgedistill.budget.spec import Limits
from edgedistill.errors import BudgetError
from edgedistill.models import SlimmableBank
from edgedistill.search.costs import Config, CostEstimator, CostInputs, Costs, Stats, over_limits, unchecked_limits
from edgedistill.search.lut import LatencyLUT
from edgedistill.search.strategies import SEARCH_STRATEGIES, Problem, SearchSettings
from edgedistill.search.upem import UPEMS, ConfigOutputs, ensemble_reference, uniform_configs

Measure = Callable[[Config], Stats]
MEASURE_MARGIN = 0.05  # a measured tail must leave 5% to the limit: a repeat (`bench`) varies by about that much


@dataclass(frozen=True)
class Candidate:
    """One scored config with its costs."""

    config: Config
    channels: list[int]
    macs: int
    params: int
    latency_ms: Stats | None
    upem: float
    measured_ms: Stats | None = None


@dataclass
class SearchResult:
    """Chosen config, runner-ups, every scored config, and how the search went."""

    strategy: str
    upem: str
    chosen: Candidate
    runner_ups: list[Candidate]
    evaluated: list[Candidate]
    space: int
    rejected: int
    seconds: float
    measure_seconds: float = 0.0
    measured: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "upem": self.upem,
            "chosen": asdict(self.chosen),
            "runner_ups": [asdict(c) for c in self.runner_ups],
            "measured": [asdict(c) for c in self.measured],
            "space": self.space,
            "evaluated": len(self.evaluated),
            "feasible": len(self.evaluated),
            "rejected": self.rejected,
            "search_seconds": round(self.seconds, 2),
            "measure_seconds": round(self.measure_seconds, 2),
            "notes": self.notes,
            "configs": [asdict(c) for c in self.evaluated],
        }


@dataclass
class UnlabeledImages:
    """Normalised unlabeled target images: one set recalibrates BN, the other is what the UPEM scores."""

    bn: torch.Tensor
    eval: torch.Tensor


def _candidate(bank: SlimmableBank, config: Config, costs: Costs, score: float) -> Candidate:
    return Candidate(config, bank.stage_channels(config), costs.macs, costs.params, costs.latency_ms, score)


def _no_fit(bank: SlimmableBank, estimate: CostEstimator, limits: Limits) -> BudgetError:
    smallest = bank.smallest_config()
    why = "; ".join(over_limits(estimate(smallest), limits))
    return BudgetError(f"no width config fits the budget: even the smallest {list(smallest)} has {why}")


def search_widths(
    bank: SlimmableBank,
    limits: Limits,
    input_shape: tuple[int, int, int, int],
    images: UnlabeledImages,
    *,
    lut: LatencyLUT | None = None,
    upem: str = "agreement",
    settings: SearchSettings | None = None,
    measure: Measure | None = None,
    shortlist: int = 3,
    show_progress: bool = False,
) -> SearchResult:
    """Choose the width config of `bank` for `limits`.

    Args:
        bank: Trained slimmable bank (its BN statistics are recalibrated per scored config).
        limits: The budget's limits.
        input_shape: Model input (N, C, H, W).
        images: Unlabeled target images (never labels).
        lut: Latency table for the budget's runtime/precision/input/threads, if profiled.
        upem: Name in `UPEMS`.
        settings: Strategy and its settings.
        measure: End-to-end latency of a config on the target runtime, when it is here.
        shortlist: At most this many top configs are measured.

    Raises:
        BudgetError: No config fits (by prediction, or by measurement of the whole shortlist).
        RegistryError: Unknown strategy or UPEM.
    """
    settings = settings or SearchSettings()
    strategy, metric = SEARCH_STRATEGIES.get(settings.strategy), UPEMS.get(upem)
    start = time.perf_counter()
    estimate = CostEstimator(CostInputs(bank, input_shape, lut))
    outputs = ConfigOutputs(bank, images.bn, images.eval)
    reference = ensemble_reference(outputs, uniform_configs(bank))

    def fits(config: Config) -> bool:
        return not over_limits(estimate(config), limits)

    problem = Problem(
        [bank.width_choices] * bank.num_stages, fits, lambda c: metric(outputs(c), reference), show_progress
    )
    strategy(problem, settings)
    if not problem.scores:
        raise _no_fit(bank, estimate, limits)
    ranked = sorted(problem.scores, key=lambda c: (problem.scores[c], estimate(c).macs), reverse=True)
    scored = [_candidate(bank, c, estimate(c), problem.scores[c]) for c in ranked]
    notes = unchecked_limits(limits, latency_known=lut is not None or measure is not None)
    seconds = time.perf_counter() - start
    measured: list[Candidate] = []
    chosen_at = 0
    if measure is not None:
        for i, cand in enumerate(scored[:shortlist]):
            m = Candidate(**{**asdict(cand), "measured_ms": measure(cand.config)})
            measured.append(m)
            scored[i] = m
            if not over_limits(estimate(cand.config), limits, m.measured_ms, MEASURE_MARGIN):
                chosen_at = i
                break
        else:
            last = measured[-1]
            why = "; ".join(over_limits(estimate(last.config), limits, last.measured_ms, MEASURE_MARGIN))
            raise BudgetError(
                f"the {len(measured)} best predicted-feasible configs all exceed the latency limit when measured "
                f"({why}); "
                "re-profile the latency table on this machine or relax the budget"
            )
    chosen = scored[chosen_at]
    return SearchResult(
        strategy=settings.strategy,
        upem=upem,
        chosen=chosen,
        runner_ups=scored[chosen_at + 1 : chosen_at + 4],
        evaluated=scored,
        space=problem.space,
        rejected=problem.rejected,
        seconds=seconds,
        measure_seconds=time.perf_counter() - start - seconds,
        measured=measured,
        notes=notes,
    )
