"""The timing loop shared by every runner (stdlib only, so the device runner stays torch-free)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Infer = Callable[[], object]


@dataclass
class Timing:
    """Raw measurements of one benchmark.

    Attributes:
        load_ms: Time to create the session/model (cold start, before any inference).
        first_inference_ms: The first call alone; includes lazy allocation and kernel selection.
        times_ms: One entry per timed call, after warm-up.
    """

    load_ms: float
    first_inference_ms: float
    times_ms: list[float]


def _ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def measure(load: Callable[[], Infer], *, warmup: int = 20, runs: int = 200, min_time_s: float = 0.0) -> Timing:
    """Time `load()`, the first inference, `warmup` untimed calls, then at least `runs` timed calls.

    Timed calls continue past `runs` until `min_time_s` of timed work has accumulated, so that very
    fast models still get a stable percentile estimate.

    Args:
        load: Creates the model/session and returns a zero-argument call that runs one inference
            on a fixed input (the input is bound in advance so its creation is not timed).
        warmup: Untimed calls after the first inference.
        runs: Minimum number of timed calls.
        min_time_s: Minimum total time of the timed calls, in seconds.

    Returns:
        The raw `Timing`.
    """
    if runs < 1 or warmup < 0 or min_time_s < 0:
        raise ValueError(f"need runs >= 1, warmup >= 0, min_time_s >= 0 (got {runs}, {warmup}, {min_time_s})")
    t0 = time.perf_counter_ns()
    infer = load()
    load_ms = _ms(t0)
    t0 = time.perf_counter_ns()
    infer()
    first_ms = _ms(t0)
    for _ in range(warmup):
        infer()
    times: list[float] = []
    total_ns, min_ns = 0, int(min_time_s * 1e9)
    while len(times) < runs or total_ns < min_ns:
        t0 = time.perf_counter_ns()
        infer()
        dt = time.perf_counter_ns() - t0
        total_ns += dt
        times.append(dt / 1e6)
    return Timing(load_ms=load_ms, first_inference_ms=first_ms, times_ms=times)
