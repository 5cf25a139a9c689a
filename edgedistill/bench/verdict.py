"""Compare measurements with a budget's limits: one `LimitCheck` per set limit.

Standard library only (the budget model is a type hint), so the torch-free device runner judges too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgedistill.budget.spec import Limits


@dataclass(frozen=True)
class LimitCheck:
    """One limit against its measurement.

    Attributes:
        name: e.g. "latency p90", "params", "macs", "peak memory".
        limit: The budget's value, in `unit`.
        value: The measurement in `unit`; None when it was not measured.
        unit: "ms", "M" (millions) or "MB".
        passed: value <= limit (a value exactly at the limit passes); False when not measured.
        margin_pct: Headroom as a percentage of the limit (negative when over); None when not measured.
        note: Why a check failed without a value.
    """

    name: str
    limit: float
    value: float | None
    unit: str
    passed: bool
    margin_pct: float | None
    note: str = ""


def _check(name: str, limit: float, value: float | None, unit: str, missing: str) -> LimitCheck:
    if value is None:
        return LimitCheck(name, limit, None, unit, passed=False, margin_pct=None, note=missing)
    return LimitCheck(name, limit, value, unit, passed=value <= limit, margin_pct=100.0 * (limit - value) / limit)


def _millions(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def check_budget(
    limits: Limits,
    *,
    latency: dict[str, Any] | None,
    macs: int | None,
    params: int | None,
    peak_rss_mb: float | None,
) -> list[LimitCheck]:
    """Check every limit the budget sets; limits it leaves out are not checked.

    Args:
        limits: The budget's limits.
        latency: A `latency_stats` dict (ms), or None when latency was not measured.
        macs: Multiply-accumulates per image.
        params: Parameter count.
        peak_rss_mb: Peak resident memory of the runtime process, in MB.

    Returns:
        One check per set limit, latency percentiles first.
    """
    return check_limits(limits.model_dump(), latency=latency, macs=macs, params=params, peak_rss_mb=peak_rss_mb)


def check_limits(
    limits: Mapping[str, Any],
    *,
    latency: dict[str, Any] | None,
    macs: int | None,
    params: int | None,
    peak_rss_mb: float | None,
) -> list[LimitCheck]:
    """`check_budget` on the plain form of the limits (`Limits.model_dump()`, e.g. read back from JSON)."""
    checks = []
    latency_limits = [(k, v) for k, v in (limits.get("latency_ms") or {}).items() if v is not None]
    for stat, limit in latency_limits:
        value = None if latency is None else latency.get(stat)
        checks.append(_check(f"latency {stat}", limit, value, "ms", "latency was not measured"))
    if limits.get("params_m") is not None:
        checks.append(_check("params", limits["params_m"], _millions(params), "M", "parameter count unknown"))
    if limits.get("macs_m") is not None:
        checks.append(_check("macs", limits["macs_m"], _millions(macs), "M", "MAC count unknown"))
    if limits.get("peak_memory_mb") is not None:
        memory = limits["peak_memory_mb"]
        checks.append(_check("peak memory", memory, peak_rss_mb, "MB", "peak memory was not measured"))
    return checks


def accuracy_check(precision: str, drop_pts: float | None, max_drop_pts: float) -> LimitCheck | None:
    """The artifact's reduced-precision top-1 drop against the budget's `accuracy.max_int8_drop_pts`.

    None for an FP32 artifact. An artifact that export refused (its manifest is still written) fails here, so
    `bench` never passes a model whose accuracy the guard rejected.
    """
    if precision == "fp32":
        return None
    return _check(f"{precision} drop", max_drop_pts, drop_pts, "pts", "the drop against FP32 was not measured")


def overall(checks: Iterable[LimitCheck]) -> bool:
    """True when every check passed (also when there are none)."""
    return all(c.passed for c in checks)
