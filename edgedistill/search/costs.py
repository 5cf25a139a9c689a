"""Cost models (registry) of a width config, and the budget check on predicted and measured costs.

`macs` and `params` are counted on the config's plain net (built on `meta`, so counting is cheap); `latency` is
predicted from a lookup table built by `edgedistill profile`. Where a bank's stages change its cost independently
(each block's cost depends on its own stage's width only, as in the `timm` family), or in pairs of neighbouring stages
(the scratch families), the counts of a few probe configs give every config's cost by inclusion-exclusion
(`StageAdditiveCount`), checked exact on random configs first; a search over the 16,384 configs of a 7-stage bank then
costs a few dozen counts instead of one per config.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgedistill.budget.spec import Limits
from edgedistill.models import Cost, SlimmableBank, count_cost
from edgedistill.registry import Registry
from edgedistill.search.blocks import plain_net
from edgedistill.search.lut import LatencyLUT, LatencyPredictor

Config = tuple[float, ...]
Stats = dict[str, float]


@dataclass(frozen=True)
class Costs:
    """Predicted costs of one config; `latency_ms` is None without a latency table."""

    macs: int
    params: int
    latency_ms: Stats | None = None


@dataclass
class CostInputs:
    """What the cost models of one bank need."""

    bank: SlimmableBank
    input_shape: tuple[int, int, int, int]
    lut: LatencyLUT | None = None


CostModel = Callable[[CostInputs], Callable[[Config], dict[str, object]] | None]
COST_MODELS: Registry[CostModel] = Registry("cost model")


class StageAdditiveCount:
    """MACs and parameters of any config from the counts of a few probe configs, by inclusion-exclusion.

    First order (`pairs=False`): the full config's count plus one change per narrowed stage, from
    `1 + stages × (choices - 1)` counts; exact when each block's cost depends on its own stage's width only (`timm`
    banks: only mid channels are elastic). Second order (`pairs=True`): plus one interaction term per pair of
    neighbouring stages narrowed together, from `(stages - 1) × (choices - 1)²` more counts; exact when a block's cost
    depends on its own stage's width and its input's (the previous stage), as in the scratch families whose stage
    outputs are elastic. `exact_on` checks a model against real counts before it is used.
    """

    def __init__(self, bank: SlimmableBank, count: Callable[[Config], Cost], pairs: bool = False) -> None:
        self.full = bank.largest_config()
        self.pairs = pairs
        base = count(self.full)
        self.base = (base.macs, base.params)
        narrower = bank.width_choices[:-1]
        self.single: dict[tuple[int, float], tuple[int, int]] = {}
        for i in range(bank.num_stages):
            for w in narrower:
                c = count(self._with({i: w}))
                self.single[i, w] = (c.macs - base.macs, c.params - base.params)
        self.pair: dict[tuple[int, float, float], tuple[int, int]] = {}
        for i in range(bank.num_stages - 1) if pairs else ():
            for a, b in itertools.product(narrower, narrower):
                c, (ma, pa), (mb, pb) = count(self._with({i: a, i + 1: b})), self.single[i, a], self.single[i + 1, b]
                self.pair[i, a, b] = (c.macs - base.macs - ma - mb, c.params - base.params - pa - pb)

    def _with(self, widths: dict[int, float]) -> Config:
        return tuple(widths.get(i, w) for i, w in enumerate(self.full))

    def __call__(self, config: Config) -> Cost:
        macs, params = self.base
        narrowed = [w != f for w, f in zip(config, self.full, strict=True)]
        for i, w in enumerate(config):
            if narrowed[i]:
                dm, dp = self.single[i, w]
                macs, params = macs + dm, params + dp
                if self.pairs and i + 1 < len(config) and narrowed[i + 1]:
                    dm, dp = self.pair[i, w, config[i + 1]]
                    macs, params = macs + dm, params + dp
        return Cost(macs=macs, params=params)

    def exact_on(self, configs: Sequence[Config], count: Callable[[Config], Cost]) -> bool:
        """Whether the sums equal real counts on `configs`."""
        return all(self(c) == count(c) for c in configs)


ADDITIVE_CHECKS = 3  # random configs (plus the smallest) on which the additive count must equal the real one


def probe_counts(stages: int, choices: int, pairs: bool) -> int:
    """Counts it takes to build a `StageAdditiveCount` (first or second order) and check it."""
    first = 1 + stages * (choices - 1)
    return first + (stages - 1) * (choices - 1) ** 2 * pairs + 1 + ADDITIVE_CHECKS


def additive_count(bank: SlimmableBank, count: Callable[[Config], Cost], seed: int = 0) -> StageAdditiveCount | None:
    """The first-order, else second-order, stage-additive count of `bank` that is exact on the smallest and a few
    seeded random configs; None when neither is."""
    if bank.num_stages < 2 or len(bank.width_choices) < 2:
        return None
    rng = random.Random(seed)
    checks = [bank.smallest_config()]
    checks += [tuple(rng.choice(bank.width_choices) for _ in range(bank.num_stages)) for _ in range(ADDITIVE_CHECKS)]
    cached = functools.lru_cache(maxsize=None)(count)
    for pairs in (False, True):
        model = StageAdditiveCount(bank, cached, pairs)
        if model.exact_on(checks, cached):
            return model
    return None


@COST_MODELS.register("count")
def _count(inp: CostInputs) -> Callable[[Config], dict[str, object]]:
    """MACs and parameters of the plain subnet (one `torch.utils.flop_counter` pass gives both).

    Banks with more configs than it takes to build the stage-additive count use it when it is exact (checked).
    """

    def exact(config: Config) -> Cost:
        return count_cost(plain_net(inp.bank, config), inp.input_shape)

    bank = inp.bank
    probes = probe_counts(bank.num_stages, len(bank.width_choices), pairs=True)
    additive = additive_count(bank, exact) if len(bank.width_choices) ** bank.num_stages > 4 * probes else None
    counted = additive or exact

    def cost(config: Config) -> dict[str, object]:
        c = counted(config)
        return {"macs": c.macs, "params": c.params}

    return cost


@COST_MODELS.register("latency")
def _latency(inp: CostInputs) -> Callable[[Config], dict[str, object]] | None:
    """Latency statistics predicted by the lookup table (None when there is no table)."""
    if inp.lut is None:
        return None
    predict = LatencyPredictor(inp.lut, inp.bank)
    return lambda config: {"latency_ms": predict(config)}


@dataclass
class CostEstimator:
    """Every available cost model of a bank, cached per distinct subnet."""

    inputs: CostInputs
    _models: list[Callable[[Config], dict[str, object]]] = field(default_factory=list)
    _cache: dict[tuple[int, ...], Costs] = field(default_factory=dict)

    def __post_init__(self) -> None:
        made = (COST_MODELS.get(name)(self.inputs) for name in COST_MODELS.names())
        self._models = [m for m in made if m is not None]

    def __call__(self, config: Sequence[float]) -> Costs:
        key = tuple(self.inputs.bank.slot_channels(config).values())
        if key not in self._cache:
            values: dict[str, object] = {}
            for model in self._models:
                values.update(model(tuple(config)))
            self._cache[key] = Costs(**values)  # type: ignore[arg-type]
        return self._cache[key]


def over_limits(costs: Costs, limits: Limits, measured_ms: Stats | None = None, margin: float = 0.0) -> list[str]:
    """The limits `costs` (and a measured latency, when given) exceed, e.g. `["macs_m 13.1 > 12"]`.

    A latency limit counts only when a latency is known (measured first, else predicted); a value exactly at the
    limit fits. `margin` (a fraction) tightens the latency limits, for measurements that will be repeated.
    """
    out = []
    if limits.macs_m is not None and costs.macs > limits.macs_m * 1e6:
        out.append(f"macs_m {costs.macs / 1e6:.2f} > {limits.macs_m:g}")
    if limits.params_m is not None and costs.params > limits.params_m * 1e6:
        out.append(f"params_m {costs.params / 1e6:.3f} > {limits.params_m:g}")
    latency = measured_ms if measured_ms is not None else costs.latency_ms
    if limits.latency_ms is not None and latency is not None:
        kind = "measured" if measured_ms is not None else "predicted"
        for stat, limit in limits.latency_ms.items():
            if latency[stat] > limit * (1 - margin):
                out.append(f"{kind} {stat} {latency[stat]:.3f} ms > {limit * (1 - margin):.4g}")
    return out


def unchecked_limits(limits: Limits, latency_known: bool) -> list[str]:
    """Limits the search cannot check (shown in search.json so nobody assumes they were)."""
    out = []
    if limits.latency_ms is not None and not latency_known:
        out.append("latency_ms: no latency table for this runtime/precision/input/threads and no measurement here")
    if limits.peak_memory_mb is not None:
        out.append("peak_memory_mb: checked by `edgedistill bench` on the device")
    return out
