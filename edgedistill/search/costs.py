"""Cost models (registry) of a width config, and the budget check on predicted and measured costs.

`macs` and `params` are counted on the config's plain net (built on `meta`, so counting is cheap); `latency` is
predicted from a lookup table built by `edgedistill profile`. Where a bank's stages change its cost independently
(each block's cost depends on its own stage's width only, as in the `timm` family), the counts of a few probe configs
give every config's cost by addition (`StageAdditiveCount`), checked exact on random configs first; a search over
thousands of 224-px configs then costs a few dozen counts instead of one per config.
"""

from __future__ import annotations

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
    """MACs and parameters of any config as the full config's plus one change per narrowed stage.

    Built from `1 + stages × (choices - 1)` counts (the full config, and each stage alone at each narrower width);
    exact when the stages' costs add up independently, which `exact_on` checks against real counts.
    """

    def __init__(self, bank: SlimmableBank, count: Callable[[Config], Cost]) -> None:
        self.full = bank.largest_config()
        self.base = count(self.full)
        self.delta: dict[tuple[int, float], tuple[int, int]] = {}
        for stage in range(bank.num_stages):
            for w in bank.width_choices[:-1]:
                c = count((*self.full[:stage], w, *self.full[stage + 1 :]))
                self.delta[stage, w] = (c.macs - self.base.macs, c.params - self.base.params)

    def __call__(self, config: Config) -> Cost:
        macs, params = self.base.macs, self.base.params
        for stage, (w, full) in enumerate(zip(config, self.full, strict=True)):
            if w != full:
                dm, dp = self.delta[stage, w]
                macs, params = macs + dm, params + dp
        return Cost(macs=macs, params=params)

    def exact_on(self, configs: Sequence[Config], count: Callable[[Config], Cost]) -> bool:
        """Whether the sums equal real counts on `configs`."""
        return all(self(c) == count(c) for c in configs)


ADDITIVE_CHECKS = 3  # random configs (plus the smallest) on which the additive count must equal the real one


def additive_count(bank: SlimmableBank, count: Callable[[Config], Cost], seed: int = 0) -> StageAdditiveCount | None:
    """The stage-additive count of `bank` if exact on the smallest and a few seeded random configs, else None."""
    if bank.num_stages < 2 or len(bank.width_choices) < 2:
        return None
    model = StageAdditiveCount(bank, count)
    rng = random.Random(seed)
    checks = [bank.smallest_config()]
    checks += [tuple(rng.choice(bank.width_choices) for _ in range(bank.num_stages)) for _ in range(ADDITIVE_CHECKS)]
    return model if model.exact_on(checks, count) else None


@COST_MODELS.register("count")
def _count(inp: CostInputs) -> Callable[[Config], dict[str, object]]:
    """MACs and parameters of the plain subnet (one `torch.utils.flop_counter` pass gives both).

    Banks with more configs than it takes to build the stage-additive count use it when it is exact (checked).
    """

    def exact(config: Config) -> Cost:
        return count_cost(plain_net(inp.bank, config), inp.input_shape)

    bank = inp.bank
    probes = 1 + bank.num_stages * (len(bank.width_choices) - 1) + 1 + ADDITIVE_CHECKS
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
