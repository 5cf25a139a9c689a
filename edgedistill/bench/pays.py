"""Does INT8 pay? Each INT8 timing against the best FP32 timing on the same device (pure, on recorded results).

Standard library only: `bench` calls it on the timings it just took, `report` on the ones it reads back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

PAYS_AT = 1.1  # an INT8 artifact less than this much faster than the best FP32 one is flagged


@dataclass(frozen=True)
class Int8Speedup:
    """One INT8 timing against the fastest FP32 timing taken on the same device, threads and batch.

    Attributes:
        artifact: The INT8 artifact folder (or file) the result timed.
        runtime: The runtime that ran it.
        device: cpu, cuda, gpu, ...
        int8_p50_ms: Its p50 (inference only when the runner split pre/infer/post).
        best_fp32: "runtime fp32" of the fastest FP32 result; None when there was none to compare with.
        best_fp32_p50_ms: That result's p50; None without one.
        speedup_vs_best_fp32: best FP32 p50 / INT8 p50; None without an FP32 timing.
        pays: speedup >= `PAYS_AT`; None without an FP32 timing.
        warning: The flag shown by `bench` and `report` when it does not pay (or cannot be compared).
    """

    artifact: str
    runtime: str
    device: str
    int8_p50_ms: float
    best_fp32: str | None
    best_fp32_p50_ms: float | None
    speedup_vs_best_fp32: float | None
    pays: bool | None
    warning: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Int8Speedup:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def p50_of(result: Mapping[str, Any]) -> float:
    """The result's p50 in ms (`stat_of`)."""
    return stat_of(result, "p50")


def stat_of(result: Mapping[str, Any], stat: str) -> float:
    """The result's `stat` (p50, p90, ...) in ms: the inference stage alone when pre/post-processing were timed too.

    FP32 references take already-normalised inputs, so comparing the artifact's inference stage keeps the ratio about
    the model, not about the harness.
    """
    split = result.get("split") or {}
    stats = split.get("infer") or result["stats"]
    return float(stats[stat])


def _setting(result: Mapping[str, Any]) -> tuple[str, int, int]:
    return (str(result.get("device", "cpu")), int(result.get("threads", 1)), int(result.get("batch", 1)))


def int8_speedups(results: Iterable[Mapping[str, Any]], pays_at: float = PAYS_AT) -> list[Int8Speedup]:
    """One `Int8Speedup` per INT8 result, against the fastest FP32 result with the same device, threads and batch.

    Args:
        results: Runner result JSONs (the `results` of a bench record), in any order.
        pays_at: The speedup below which INT8 is flagged.
    """
    rows = list(results)
    out = []
    for r in rows:
        if r.get("precision") != "int8":
            continue
        fp32 = [f for f in rows if f.get("precision") == "fp32" and _setting(f) == _setting(r)]
        p50, device = p50_of(r), _setting(r)[0]
        head = (str(r.get("artifact", "")), str(r["runtime"]), device, p50)
        if not fp32:
            why = f"INT8 not compared: no FP32 timing on {device} with the same threads and batch"
            out.append(Int8Speedup(*head, None, None, None, None, why))
            continue
        best = min(fp32, key=p50_of)
        best_p50 = p50_of(best)
        speedup = best_p50 / p50 if p50 > 0 else float("inf")
        pays = speedup >= pays_at
        warning = None
        if not pays:
            fp32_text = f"{best['runtime']} {best_p50:.3f} ms"
            warning = f"INT8 pays less than {pays_at:g}× over FP32 ({fp32_text}): {speedup:.2f}×"
        out.append(Int8Speedup(*head, f"{best['runtime']} fp32", best_p50, speedup, pays, warning))
    return out
