"""Report figures (matplotlib, Agg backend): latency histogram + CDF per runtime, accuracy vs latency Pareto."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.io import atomic_write


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def log_ticks(lo: float, hi: float, max_ticks: int = 7) -> list[float]:
    """Tick positions for a log axis over [lo, hi] whose labels cannot crowd: at most `max_ticks` of them.

    The densest of 1-2-3-5, 1-2-5 and decade steps that fits (every k-th decade when even those are too many);
    a span too narrow for three 1-2-3-5 ticks gets evenly spaced round numbers instead.
    """
    from matplotlib.ticker import MaxNLocator

    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    for i, mantissas in enumerate(((1.0, 2.0, 3.0, 5.0), (1.0, 2.0, 5.0), (1.0,))):
        ticks = [t for t in (m * 10.0**e for e in range(first, last + 1) for m in mantissas) if lo <= t <= hi]
        if i == 0 and len(ticks) < 3:
            return [float(t) for t in MaxNLocator(nbins=4).tick_values(lo, hi) if lo <= t <= hi]
        if len(ticks) <= max_ticks:
            return ticks
    return ticks[:: math.ceil(len(ticks) / max_ticks)]


def _log_x(ax: Any) -> None:
    """Log-scale the x axis with plain-number labels at `log_ticks`, minor ticks unlabelled (after plotting)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)


def latency_plot(latency: list[dict[str, Any]], path: Path, limit: tuple[str, float] | None) -> Path | None:
    """Histogram (left) and empirical CDF (right) of per-call latency, one series per result with times.

    Returns:
        `path`, or None when no result has per-call times.
    """
    fig = latency_figure(latency, limit)
    return None if fig is None else _save(fig, path)


def latency_figure(latency: list[dict[str, Any]], limit: tuple[str, float] | None) -> Any:
    """The figure of `latency_plot` (a matplotlib Figure; the caller closes it), or None without per-call times."""
    series = [(f"{r['timed']}: {r['label']}", np.asarray(r["times_ms"])) for r in latency if r.get("times_ms")]
    if not series:
        return None
    plt = _pyplot()
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(12, 4.2))
    hi = max(float(np.percentile(t, 99.5)) for _, t in series)
    lo = min(float(t.min()) for _, t in series)
    bins = np.geomspace(max(lo, 1e-3), max(hi, lo * 1.01), 60)
    for name, t in series:
        ax_h.hist(t, bins=bins, histtype="step", linewidth=1.4, label=name)
        xs = np.sort(t)
        ax_c.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=name)
    for ax in (ax_h, ax_c):
        ax.set_xscale("log")
        ax.set_xlabel("latency per call (ms, log scale)")
        if limit is not None:
            ax.axvline(limit[1], color="red", linestyle="--", label=f"budget {limit[0]} ≤ {limit[1]:g} ms")
        _log_x(ax)
    ax_h.set_ylabel("calls")
    ax_c.set_ylabel("fraction of calls ≤ x")
    for q in (0.5, 0.9, 0.99):
        ax_c.axhline(q, color="grey", linewidth=0.5)
    ax_h.set_title("latency histogram")
    ax_c.set_title("latency CDF (p50 / p90 / p99 lines)")
    ax_c.legend(fontsize=7, loc="lower right")
    return fig


def pareto_points(report: dict[str, Any], stat: str) -> list[dict[str, Any]]:
    """(label, latency at `stat`, top-1, kind) for every width and artifact with both numbers."""
    points = []
    for w in (report.get("widths") or {}).get("widths", []):
        if w.get("accuracy") is not None and w.get("stats"):
            points.append(
                {
                    "label": f"width {w['width']:g} ({w['label']})",
                    "ms": w["stats"][stat],
                    "acc": w["accuracy"],
                    "kind": "width",
                }
            )
    for e in report.get("exports", []):
        acc = e.get("accuracy") or {}
        candidates = (acc.get("quantized"), acc.get("artifact"), acc.get("fp32"))  # the shipped model's own top-1
        top1 = next((v for v in candidates if v is not None), None)
        own = [r for r in report.get("latency", []) if r["timed"] == e["target"] and r["precision"] == e["precision"]]
        if top1 is not None and own:
            points.append({"label": e["target"], "ms": own[0]["stats"][stat], "acc": top1, "kind": "artifact"})
    return points


def pareto_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points no other point beats on both latency (lower) and accuracy (higher), fastest first."""
    front, best = [], -np.inf
    for p in sorted(points, key=lambda p: (p["ms"], -p["acc"])):
        if p["acc"] > best:
            front.append(p)
            best = p["acc"]
    return front


def pareto_plot(report: dict[str, Any], path: Path, limit: tuple[str, float] | None) -> Path | None:
    """Top-1 vs latency of the bank's widths and of every exported precision, the front and the budget line."""
    stat = limit[0] if limit else "p50"
    points = pareto_points(report, stat)
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for kind, marker in (("width", "o"), ("artifact", "s")):
        sel = [p for p in points if p["kind"] == kind]
        if sel:
            ax.scatter([p["ms"] for p in sel], [p["acc"] for p in sel], marker=marker, label=kind + "s", zorder=3)
        for p in sel:
            ax.annotate(p["label"], (p["ms"], p["acc"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([p["ms"] for p in front], [p["acc"] for p in front], color="grey", linestyle=":", label="Pareto front")
    if limit is not None:
        ax.axvline(limit[1], color="red", linestyle="--", label=f"budget {stat} ≤ {limit[1]:g} ms")
    ax.set_xlabel(f"latency {stat} (ms)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("accuracy vs latency")
    ax.legend(fontsize=8)
    return _save(fig, path)


SENSITIVITY_BARS = 30  # layers per artifact in the figure (most sensitive first); the manifest has them all


def sensitivity_plot(exports: list[dict[str, Any]], path: Path) -> Path | None:
    """Per INT8 artifact with a sensitivity report: its layers sorted by sensitivity, local SQNR and SQNR bars
    (left axis) and single-layer disagreement dots (right axis).

    Returns:
        `path`, or None when no export has a sensitivity report.
    """
    reports = [(e["target"], e["sensitivity"]) for e in exports if (e.get("sensitivity") or {}).get("layers")]
    if not reports:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(reports), 1, figsize=(11, 3.8 * len(reports)), squeeze=False)
    for ax, (target, report) in zip(axes[:, 0], reports, strict=True):
        layers = report["layers"][:SENSITIVITY_BARS]
        x = np.arange(len(layers))
        ax.bar(x - 0.2, [r["local_sqnr_db"] for r in layers], width=0.4, label="local SQNR (dB)")
        ax.bar(x + 0.2, [r["sqnr_db"] for r in layers], width=0.4, label="SQNR in the INT8 model (dB)", alpha=0.6)
        ax.set_ylabel("SQNR (dB, higher is better)")
        ax.set_xticks(x, [r["node"][-28:] for r in layers], rotation=75, fontsize=7, ha="right")
        twin = ax.twinx()
        measured = [(i, r["disagreement_pct"]) for i, r in enumerate(layers) if r.get("disagreement_pct") is not None]
        if measured:
            twin.plot(*zip(*measured, strict=True), "o", color="red", label="disagreement, layer alone in INT8 (%)")
        twin.set_ylabel("top-1 disagreement with FP32 (%)")
        twin.set_ylim(bottom=0)
        shown = (
            f"{len(layers)} most sensitive of {len(report['layers'])}" if len(report["layers"]) > len(layers) else ""
        )
        ax.set_title(f"{target}: INT8 sensitivity per layer, most sensitive first {shown}".strip())
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)
