"""Compare measurements with a budget's limits: one `LimitCheck` per set limit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    checks = []
    latency_limits = limits.latency_ms.items() if limits.latency_ms else []
    for stat, limit in latency_limits:
        value = None if latency is None else latency.get(stat)
        checks.append(_check(f"latency {stat}", limit, value, "ms", "latency was not measured"))
    if limits.params_m is not None:
        checks.append(_check("params", limits.params_m, _millions(params), "M", "parameter count unknown"))
    if limits.macs_m is not None:
        checks.append(_check("macs", limits.macs_m, _millions(macs), "M", "MAC count unknown"))
    if limits.peak_memory_mb is not None:
        checks.append(_check("peak memory", limits.peak_memory_mb, peak_rss_mb, "MB", "peak memory was not measured"))
    return checks


def overall(checks: Iterable[LimitCheck]) -> bool:
    """True when every check passed (also when there are none)."""
    return all(c.passed for c in checks)
