"""Pareto view of a search: UPEM (and test accuracy where labels exist) vs predicted cost, budget line, choice."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edgedistill.budget.spec import Limits
from edgedistill.io import atomic_write
from edgedistill.search.select import Candidate, SearchResult

Config = tuple[float, ...]


def _axis(result: SearchResult, limits: Limits) -> tuple[str, float | None, str]:
    """Cost shown on x: predicted latency (at the budget's latency statistic) when known, else MACs."""
    stat = limits.latency_ms.items()[0] if limits.latency_ms is not None and limits.latency_ms.items() else None
    if result.chosen.latency_ms is not None:
        name = stat[0] if stat else "p50"
        return name, stat[1] if stat else None, f"predicted latency {name} (ms)"
    return "macs", limits.macs_m, "MACs (M)"


def _x(c: Candidate, key: str) -> float:
    if key == "macs":
        return c.macs / 1e6
    assert c.latency_ms is not None
    return c.latency_ms[key]


def pareto_plot(
    result: SearchResult,
    limits: Limits,
    budget: str,
    path: Path,
    accuracy: Mapping[Config, float] | None = None,
) -> Path:
    """Scatter every scored config, mark the chosen one and draw the budget's limit; PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, limit, label = _axis(result, limits)
    panels = 2 if accuracy else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2), squeeze=False)
    series = [(f"UPEM ({result.upem})", {c.config: c.upem for c in result.evaluated})]
    if accuracy:
        series.append(("test top-1 % (labels, not used by the search)", dict(accuracy)))
    for ax, (ylabel, ys) in zip(axes[0], series, strict=True):
        pts = [(c, ys[c.config]) for c in result.evaluated if c.config in ys]
        ax.scatter([_x(c, key) for c, _ in pts], [y for _, y in pts], s=14, alpha=0.7, label="scored configs")
        if result.chosen.config in ys:
            ax.scatter([_x(result.chosen, key)], [ys[result.chosen.config]], s=90, marker="*", color="red",
                       label=f"chosen {list(result.chosen.config)}")  # fmt: skip
        if limit is not None:
            ax.axvline(limit, color="grey", linestyle="--", label=f"budget {limit:g}")
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{budget}: {len(result.evaluated)} feasible configs scored ({result.strategy})")
    fig.tight_layout()
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path
