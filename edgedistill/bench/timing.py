"""The timing loop shared by every runner (stdlib only, so the device runner stays torch-free)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Infer = Callable[[], object]
# Named steps of one call: each takes the previous step's output (the first gets None).
Stages = list[tuple[str, Callable[[object], object]]]


@dataclass
class Timing:
    """Raw measurements of one benchmark.

    Attributes:
        load_ms: Time to create the session/model (cold start, before any inference).
        first_inference_ms: The first call alone; includes lazy allocation and kernel selection.
        times_ms: One entry per timed call, after warm-up.
        stage_ms: Per-stage times of the same calls (pre/infer/post), when timed by stages.
    """

    load_ms: float
    first_inference_ms: float
    times_ms: list[float]
    stage_ms: dict[str, list[float]] = field(default_factory=dict)


def _ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def _check(runs: int, warmup: int, min_time_s: float, warmup_time_s: float) -> None:
    if runs < 1 or warmup < 0 or min_time_s < 0 or warmup_time_s < 0:
        raise ValueError(
            f"need runs >= 1 and warmup, min_time_s, warmup_time_s >= 0 (got {runs}, {warmup}, {min_time_s}, "
            f"{warmup_time_s})"
        )


def _warm(infer: Infer, warmup: int, warmup_time_s: float) -> None:
    """At least `warmup` calls and at least `warmup_time_s` seconds of calls."""
    end = time.perf_counter_ns() + int(warmup_time_s * 1e9)
    done = 0
    while done < warmup or time.perf_counter_ns() < end:
        infer()
        done += 1


def measure(
    load: Callable[[], Infer],
    *,
    warmup: int = 20,
    runs: int = 200,
    min_time_s: float = 0.0,
    warmup_time_s: float = 0.0,
) -> Timing:
    """Time `load()`, the first inference, the warm-up calls, then at least `runs` timed calls.

    Timed calls continue past `runs` until `min_time_s` of timed work has accumulated, so that very
    fast models still get a stable percentile estimate.

    Args:
        load: Creates the model/session and returns a zero-argument call that runs one inference
            on a fixed input (the input is bound in advance so its creation is not timed).
        warmup: Minimum untimed calls after the first inference.
        runs: Minimum number of timed calls.
        min_time_s: Minimum total time of the timed calls, in seconds.
        warmup_time_s: Minimum time of the untimed calls, in seconds.

    Returns:
        The raw `Timing`.
    """
    _check(runs, warmup, min_time_s, warmup_time_s)
    t0 = time.perf_counter_ns()
    infer = load()
    load_ms = _ms(t0)
    t0 = time.perf_counter_ns()
    infer()
    first_ms = _ms(t0)
    _warm(infer, warmup, warmup_time_s)
    times: list[float] = []
    total_ns, min_ns = 0, int(min_time_s * 1e9)
    while len(times) < runs or total_ns < min_ns:
        t0 = time.perf_counter_ns()
        infer()
        dt = time.perf_counter_ns() - t0
        total_ns += dt
        times.append(dt / 1e6)
    return Timing(load_ms=load_ms, first_inference_ms=first_ms, times_ms=times)


def _run_stages(stages: Stages) -> object:
    out: object = None
    for _, step in stages:
        out = step(out)
    return out


def measure_stages(
    load: Callable[[], Stages],
    *,
    warmup: int = 20,
    runs: int = 200,
    min_time_s: float = 0.0,
    warmup_time_s: float = 0.0,
) -> Timing:
    """Like `measure`, for a call made of named stages (e.g. pre, infer, post), each timed separately.

    `times_ms` holds the sum of the stages of each call; `stage_ms` each stage's own times.
    """
    _check(runs, warmup, min_time_s, warmup_time_s)
    t0 = time.perf_counter_ns()
    stages = load()
    load_ms = _ms(t0)
    t0 = time.perf_counter_ns()
    _run_stages(stages)
    first_ms = _ms(t0)
    _warm(lambda: _run_stages(stages), warmup, warmup_time_s)
    stage_ms: dict[str, list[float]] = {name: [] for name, _ in stages}
    times: list[float] = []
    total_ns, min_ns = 0, int(min_time_s * 1e9)
    while len(times) < runs or total_ns < min_ns:
        out: object = None
        call_ns = 0
        for name, step in stages:
            t0 = time.perf_counter_ns()
            out = step(out)
            dt = time.perf_counter_ns() - t0
            call_ns += dt
            stage_ms[name].append(dt / 1e6)
        total_ns += call_ns
        times.append(call_ns / 1e6)
    return Timing(load_ms=load_ms, first_inference_ms=first_ms, times_ms=times, stage_ms=stage_ms)
