"""Rich tables for benchmark results and budget verdicts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table

from edgedistill.bench.verdict import LimitCheck


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def latency_table(results: list[dict[str, Any]], title: str = "Latency") -> Table:
    """One row per runner result JSON (runtime, precision, threads, percentiles, throughput, peak RSS)."""
    table = Table(title=title)
    table.add_column("runtime")
    table.add_column("precision")
    for col in ("threads", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "img/s", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in results:
        s = r["stats"]
        table.add_row(
            r["runtime"],
            r["precision"],
            str(r["threads"]),
            str(r.get("batch", 1)),
            _num(s["p50"], 3),
            _num(s["p90"], 3),
            _num(s["p99"], 3),
            _num(s["mean"], 3),
            _num(s["throughput_ips"], 1),
            _num(r.get("peak_rss_mb"), 1),
        )
    return table


def verdict_table(checks: Iterable[LimitCheck], title: str = "Budget") -> Table:
    """One row per limit: limit, measured value, margin and PASS/FAIL (with the reason when unmeasured)."""
    table = Table(title=title)
    table.add_column("limit")
    for col in ("budget", "measured", "margin"):
        table.add_column(col, justify="right")
    table.add_column("verdict")
    for c in checks:
        verdict = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
        if c.note:
            verdict += f" ({c.note})"
        margin = "–" if c.margin_pct is None else f"{c.margin_pct:+.1f}%"
        measured = "–" if c.value is None else f"{c.value:.3f} {c.unit}"
        table.add_row(c.name, f"{c.limit:g} {c.unit}", measured, margin, verdict)
    return table
