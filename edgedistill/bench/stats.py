"""Latency statistics from per-call timings (numpy + stdlib only, safe for the device runner)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_stats(times_ms: Sequence[float], batch: int = 1) -> dict[str, float | int]:
    """Summarise per-call latencies.

    Args:
        times_ms: One wall-clock time per inference call, in milliseconds.
        batch: Images per call; throughput counts images, not calls.

    Returns:
        p50, p90, p99, mean, std, min, max (ms), n (calls) and throughput_ips (images/s from the mean).

    Raises:
        ValueError: No timings, or a batch below 1.
    """
    if len(times_ms) == 0:
        raise ValueError("latency_stats needs at least one timing")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    t = np.asarray(times_ms, dtype=np.float64)
    # Linear interpolation between order statistics (numpy's default), so 1..100 ms gives p50 = 50.5.
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    mean = float(t.mean())
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": mean,
        "std": float(t.std()),
        "min": float(t.min()),
        "max": float(t.max()),
        "n": int(t.size),
        "throughput_ips": batch * 1000.0 / mean if mean > 0 else float("inf"),
    }
