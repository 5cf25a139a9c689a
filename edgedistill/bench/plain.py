"""Plain-text latency table and budget verdict, for the device runner's terminal (standard library only, no rich)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from edgedistill.bench.verdict import LimitCheck, overall

LATENCY_COLUMNS = ("runtime", "precision", "threads", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "calls")
VERDICT_COLUMNS = ("limit", "budget", "measured", "margin", "verdict")


def text_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    """Columns padded to their widest cell, aligned per column by `align` ("l" left, "r" right, e.g. "llrr")."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in table)


def latency_text(records: Iterable[dict[str, Any]]) -> str:
    """One row per runner result: runtime, precision, threads, batch, p50/p90/p99/mean in ms, timed calls."""
    rows = []
    for r in records:
        s = r["stats"]
        ms = [f"{s[k]:.3f}" for k in ("p50", "p90", "p99", "mean")]
        rows.append([r["runtime"], r["precision"], str(r["threads"]), str(r.get("batch", 1)), *ms, str(s["n"])])
    return text_table(LATENCY_COLUMNS, rows, "llrrrrrrr")


def verdict_text(checks: Sequence[LimitCheck], budget: str) -> str:
    """A row per limit (budget, measured, margin, PASS/FAIL with the reason when unmeasured), then the verdict line."""
    rows = []
    for c in checks:
        measured = "–" if c.value is None else f"{c.value:.3f} {c.unit}"
        margin = "–" if c.margin_pct is None else f"{c.margin_pct:+.1f}%"
        verdict = ("PASS" if c.passed else "FAIL") + (f" ({c.note})" if c.note else "")
        rows.append([c.name, f"{c.limit:g} {c.unit}", measured, margin, verdict])
    verdict = "PASS" if overall(checks) else "FAIL"
    table = text_table(VERDICT_COLUMNS, rows, "lrrrl") if rows else "(the budget sets no limits)"
    return f"{table}\nverdict: {verdict}   budget {budget}"
