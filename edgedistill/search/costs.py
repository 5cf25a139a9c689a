"""Cost models (registry) of a width config, and the budget check on predicted and measured costs.

`macs` and `params` are counted on the config's plain net (built on `meta`, so counting is cheap); `latency` is
predicted from a lookup table built by `edgedistill profile`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgedistill.budget.spec import Limits
from edgedistill.models import SlimmableBank, count_cost
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


@COST_MODELS.register("count")
def _count(inp: CostInputs) -> Callable[[Config], dict[str, object]]:
    """MACs and parameters of the plain subnet (one `torch.utils.flop_counter` pass gives both)."""

    def cost(config: Config) -> dict[str, object]:
        c = count_cost(plain_net(inp.bank, config), inp.input_shape)
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
