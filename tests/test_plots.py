"""Report figures: log-axis tick labels never overlap, whatever span the timings cover."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from edgedistill.report.plots import latency_figure, log_ticks


def _times(lo: float, hi: float, n: int = 400, seed: int = 0) -> list[float]:
    """Per-call times (ms) spread log-uniformly over [lo, hi], rounded as the runner records them."""
    t = np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n))
    return [round(float(v), 4) for v in [lo, *t, hi]]


def _visible_labels(fig: Any) -> list[list[tuple[Any, str]]]:
    """Per axis: (window extent, text) of every non-empty x tick label inside the view, left to right."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    per_axis = []
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        labels = [*ax.get_xticklabels(minor=False), *ax.get_xticklabels(minor=True)]
        inside = [t for t in labels if t.get_visible() and t.get_text() and lo <= t.get_position()[0] <= hi]
        per_axis.append(sorted(((t.get_window_extent(renderer), t.get_text()) for t in inside), key=lambda b: b[0].x0))
    return per_axis


@pytest.mark.parametrize("span", [(0.2, 20.0), (0.2, 2.0), (3.0, 30.0), (0.5, 0.7), (0.01, 5000.0)])
def test_latency_plot_tick_labels_do_not_overlap(span: tuple[float, float]) -> None:
    import matplotlib.pyplot as plt

    fast, slow = _times(span[0], span[0] * 1.5, seed=1), _times(*span, seed=2)
    latency = [
        {"timed": "onnxruntime-int8", "label": "onnxruntime int8", "times_ms": fast},
        {"timed": "torch", "label": "torch fp32", "times_ms": slow},
    ]
    fig = latency_figure(latency, ("p90", span[1] / 2))
    try:
        for labels in _visible_labels(fig):
            assert len(labels) >= 2, "a log axis needs at least two labelled ticks to be read"
            for (a, text_a), (b, text_b) in pairwise(labels):
                assert a.x1 <= b.x0, f"tick labels {text_a!r} and {text_b!r} overlap"
            assert all("times" not in text and "^" not in text for _, text in labels)  # plain numbers, no 2×10^-1
    finally:
        plt.close(fig)


def test_log_ticks_are_few_and_inside_the_span() -> None:
    assert log_ticks(0.2, 20.0) == pytest.approx([0.2, 0.5, 1, 2, 5, 10, 20])
    assert log_ticks(1.0, 3.0) == pytest.approx([1, 2, 3])
    for lo, hi in [(0.2, 20.0), (0.51, 0.53), (1e-3, 1e6), (0.9, 1.1)]:
        ticks = log_ticks(lo, hi)
        assert 2 <= len(ticks) <= 7 and all(lo <= t <= hi for t in ticks) and ticks == sorted(ticks)


def test_latency_figure_without_times_is_none() -> None:
    assert latency_figure([{"timed": "x", "label": "x", "times_ms": []}], None) is None
