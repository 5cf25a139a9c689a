"""`search_widths`: budget → width config. Feasible by predicted cost, ranked by a UPEM, verified by measurement.

1. Cost models reject configs over the budget's MACs/params and, with a latency table, predicted latency.
2. A strategy scores feasible configs with the UPEM on unlabeled target images (BN recalibrated per config).
3. The best-scored configs are measured end to end, best first, when the runtime is here; the first whose
   measured latency fits with a 5% margin is chosen, so a chosen config does not violate the budget when measured.
   For an INT8 budget the quantized shortlist is also scored (agreement with the UPEM's FP32 reference on the same
   unlabeled images), and the fitting config with the best INT8 score is chosen: the best subnet after quantization.
   Without a latency table, a shortlist that is all too slow is followed by cheaper configs (`search.verify`).
4. The UPEM of the chosen config and its runner-ups gets a 95% interval over the scoring images
   (`search.confidence`), with a warning when a runner-up is within the noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from edgedistill.budget.spec import Limits
from edgedistill.errors import BudgetError
from edgedistill.models import SlimmableBank
from edgedistill.options import param
from edgedistill.search.confidence import Confidence, assess, bootstrap_scores
from edgedistill.search.costs import Config, CostEstimator, CostInputs, Costs, Stats, over_limits, unchecked_limits
from edgedistill.search.lut import LatencyLUT
from edgedistill.search.strategies import SEARCH_STRATEGIES, Problem, SearchSettings
from edgedistill.search.upem import UPEMS, ConfigOutputs, Outputs, Reference, Upem, agreement, timed_reference
from edgedistill.search.verify import Quality, Verification, verify

Measure = Callable[[Config], Stats]
RUNNER_UPS = 3
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
    upem_ci: tuple[float, float] | None = None  # 95% interval over the scoring images (chosen and runner-ups)
    int8_agreement: float | None = None  # INT8 budgets: the quantized candidate's UPEM agreement (measured ones)


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
    measure_log: list[dict[str, Any]] = field(default_factory=list)  # every measurement, in order, and why
    confidence: Confidence | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "upem": self.upem,
            "chosen": asdict(self.chosen),
            "runner_ups": [asdict(c) for c in self.runner_ups],
            "measured": [asdict(c) for c in self.measured],
            "measure_log": self.measure_log,
            "confidence": None if self.confidence is None else self.confidence.to_json(),
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


def _too_slow(v: Verification, table: bool, measure_limit: int) -> BudgetError:
    last = v.log[-1]
    why = "; ".join(last.over)
    if table:
        return BudgetError(
            f"the {len(v.log)} best predicted-feasible configs all exceed the latency limit when measured ({why}); "
            "re-profile the latency table on this machine or relax the budget"
        )
    cheapest = min(v.log, key=lambda m: m.macs)
    tried = f"the {len(v.log)} configs measured, down to {list(cheapest.config)} at {cheapest.macs / 1e6:.2f} M MACs,"
    if v.exhausted:
        return BudgetError(f"no width config fits the latency limit: {tried} all exceed it ({why}); relax the budget")
    return BudgetError(
        f"{tried} all exceed the latency limit ({why}); raise {param('measure_limit')} (now {measure_limit}), build "
        "the latency table with `edgedistill profile`, or relax the budget"
    )


def _int8_notes(v: Verification) -> list[str]:
    """What the INT8 comparison of the measured shortlist did (nothing when it was not made)."""
    fitting = [m for m in v.log if m.fits and m.int8_quality is not None]
    if not fitting or v.chosen is None:
        return []
    best = next(m for m in fitting if m.index == v.chosen)
    first = fitting[0]  # the best UPEM (FP32) of the fitting configs
    if best is first:
        return [f"INT8-aware choice: the best FP32 UPEM of the measured configs is also the best after INT8 "
                f"({best.int8_quality:.2f}% INT8 agreement with the FP32 reference)"]  # fmt: skip
    return [f"INT8-aware choice: {list(best.config)} ({best.int8_quality:.2f}% INT8 agreement with the FP32 reference) "
            f"over the better FP32 UPEM {list(first.config)} ({first.int8_quality:.2f}% after INT8)"]  # fmt: skip


def _with_intervals(
    metric: Upem,
    outputs: ConfigOutputs,
    reference: Reference,
    group: list[Candidate],
    images: int,
    seed: int,
) -> tuple[Candidate, list[Candidate], Confidence]:
    """The chosen candidate (first of `group`) and its runner-ups with their UPEM intervals, and the assessment."""
    boot = bootstrap_scores(metric, [outputs(c.config) for c in group], reference, seed=seed)
    cis, confidence = assess([c.config for c in group], [c.upem for c in group], boot, images=images, seed=seed)
    chosen, *runner_ups = [replace(c, upem_ci=ci) for c, ci in zip(group, cis, strict=True)]
    return chosen, runner_ups, confidence


def search_widths(
    bank: SlimmableBank,
    limits: Limits,
    input_shape: tuple[int, int, int, int],
    images: UnlabeledImages,
    *,
    lut: LatencyLUT | None = None,
    upem: str = "agreement-widest",
    settings: SearchSettings | None = None,
    measure: Measure | None = None,
    shortlist: int = 3,
    measure_limit: int = 6,
    show_progress: bool = False,
    int8_outputs: Callable[[Config], torch.Tensor] | None = None,
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
        shortlist: The top configs measured first, best UPEM first.
        measure_limit: Without a latency table, configs measured at most in all when the shortlist is too slow.
        int8_outputs: INT8 budgets: logits of a config's quantized artifact on `images.eval` (after `measure` ran
            for it). The measured shortlist is then compared by the `agreement` UPEM of these logits with the UPEM's
            FP32 reference, and the best fitting one is chosen.

    Raises:
        BudgetError: No config fits (by prediction, or by measurement: the shortlist, and the cheaper configs
            measured after it without a latency table).
        RegistryError: Unknown strategy or UPEM.
    """
    settings = settings or SearchSettings()
    strategy, metric = SEARCH_STRATEGIES.get(settings.strategy), UPEMS.get(upem)
    start = time.perf_counter()
    estimate = CostEstimator(CostInputs(bank, input_shape, lut))
    outputs = ConfigOutputs(bank, images.bn, images.eval)
    reference, per_score = timed_reference(metric, outputs, show_progress)  # per score: BN recal. + outputs

    def fits(config: Config) -> bool:
        return not over_limits(estimate(config), limits)

    problem = Problem(
        [bank.width_choices] * bank.num_stages,
        fits,
        lambda c: metric(outputs(c), reference),
        show_progress,
        seconds_per_score=per_score,
    )
    strategy(problem, settings)
    if not problem.scores:
        raise _no_fit(bank, estimate, limits)
    ranked = sorted(problem.scores, key=lambda c: (problem.scores[c], estimate(c).macs), reverse=True)
    scored = [_candidate(bank, c, estimate(c), problem.scores[c]) for c in ranked]
    notes = [*problem.notes, *unchecked_limits(limits, latency_known=lut is not None or measure is not None)]
    seconds = time.perf_counter() - start
    measured: list[Candidate] = []
    log: list[dict[str, Any]] = []
    chosen_at, bound, measure_seconds = 0, float("inf"), 0.0
    quality: Quality | None = None
    if int8_outputs is not None:
        int8 = int8_outputs

        def quality(config: Config) -> float:
            return agreement(Outputs(int8(config)), reference)

    if measure is not None:
        v = verify(
            [(c.config, c.macs) for c in scored],
            measure,
            lambda c, ms: over_limits(estimate(c), limits, ms, MEASURE_MARGIN),
            shortlist=shortlist,
            fallback=lut is None,
            limit=max(shortlist, measure_limit),
            quality=quality,
        )
        measure_seconds = time.perf_counter() - start - seconds
        for m in v.log:
            scored[m.index] = replace(scored[m.index], measured_ms=m.measured_ms, int8_agreement=m.int8_quality)
        measured, log = [scored[m.index] for m in v.log], [m.to_json() for m in v.log]
        if v.chosen is None:
            raise _too_slow(v, lut is not None, measure_limit)
        chosen_at = v.chosen
        notes += _int8_notes(v)
        if v.fallback:
            bound = min(m.macs for m in v.misses)
            notes.append(
                f"no latency table: the {min(shortlist, len(scored))} shortlisted configs were too slow when "
                f"measured, so {len(v.log) - min(shortlist, len(scored))} more were measured, cheaper by MACs, "
                f"until {list(scored[chosen_at].config)} fitted (measure_log says which and why)"
            )
    missed = {tuple(m["config"]) for m in log if not m["fits"]}
    later = [c for c in scored[chosen_at + 1 :] if c.config not in missed and c.macs < bound]
    chosen, runner_ups, confidence = _with_intervals(
        metric, outputs, reference, [scored[chosen_at], *later[:RUNNER_UPS]], len(images.eval), settings.seed
    )
    with_ci = {c.config: c for c in (chosen, *runner_ups)}
    scored = [with_ci.get(c.config, c) for c in scored]
    return SearchResult(
        strategy=settings.strategy,
        upem=upem,
        chosen=chosen,
        runner_ups=runner_ups,
        evaluated=scored,
        space=problem.space,
        rejected=problem.rejected,
        seconds=seconds,
        measure_seconds=measure_seconds,
        measured=measured,
        notes=notes,
        measure_log=log,
        confidence=confidence,
    )
