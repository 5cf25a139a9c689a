"""Typed results of the timing calls (`bench`, `time_artifact`, `emit_runner`), built from the runners' JSON, and of
`report`, which carries the deployment decision `bench` made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedistill.api.results import _Result

if TYPE_CHECKING:
    from edgedistill.bench.choose import PrecisionChoice
    from edgedistill.bench.pays import Int8Speedup
    from edgedistill.bench.verdict import LimitCheck


@dataclass(frozen=True)
class Latency:
    """One timed runtime: the runner's statistics (ms per call: p50, p90, p99, mean, ...) and peak memory."""

    runtime: str
    precision: str
    device: str
    threads: int
    batch: int
    stats: dict[str, float]
    peak_rss_mb: float | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def p50(self) -> float:
        return float(self.stats["p50"])

    @property
    def p90(self) -> float:
        return float(self.stats["p90"])

    @property
    def p99(self) -> float:
        return float(self.stats["p99"])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Latency:
        """From a runner's result JSON."""
        return cls(
            runtime=d["runtime"],
            precision=d["precision"],
            device=d.get("device", "cpu"),
            threads=int(d.get("threads", 1)),
            batch=int(d.get("batch", 1)),
            stats=dict(d["stats"]),
            peak_rss_mb=d.get("peak_rss_mb"),
            raw=d,
        )


@dataclass(frozen=True)
class WidthLatency:
    """One uniform width of the bank: test top-1 (%) and ONNX Runtime FP32 latency (ms)."""

    width: float
    accuracy: float
    stats: dict[str, float]


@dataclass(frozen=True)
class BenchResult(_Result):
    """The artifact's latency (first in `latency`, then the references), its budget checks and the verdict.

    Under a `precision: auto` budget `artifact` is the deployed one and `precision_choice` says why.
    """

    artifact: Path
    budget: str
    runtime: str
    precision: str
    verdict: str
    accuracy: dict[str, Any]  # the manifest's: split, n, fp32, quantized (%), drop_pts, agreement
    latency: tuple[Latency, ...]
    checks: tuple[LimitCheck, ...]
    widths: tuple[WidthLatency, ...] = ()
    int8_speedup: tuple[Int8Speedup, ...] = ()  # every INT8 timing vs the best FP32 one on its device
    precision_choice: PrecisionChoice | None = None  # precision auto: what deployed and why

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def json(self) -> Path:
        return self.artifact / "bench.json"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        """From `bench.json` (or what `bench_run` returns)."""
        from edgedistill.bench.choose import PrecisionChoice
        from edgedistill.bench.pays import Int8Speedup
        from edgedistill.bench.verdict import LimitCheck

        choice = d.get("precision_choice")
        widths = (d.get("widths") or {}).get("widths", [])
        return cls(
            raw=d,
            artifact=Path(d["artifact"]),
            budget=d["budget"],
            runtime=d["runtime"],
            precision=d["precision"],
            verdict=d["verdict"],
            accuracy=dict(d.get("accuracy") or {}),
            latency=tuple(Latency.from_dict(r) for r in d.get("results", [])),
            checks=tuple(LimitCheck(**c) for c in d.get("checks", [])),
            widths=tuple(WidthLatency(float(w["width"]), float(w["accuracy"]), dict(w["stats"])) for w in widths),
            int8_speedup=tuple(Int8Speedup.from_json(x) for x in d.get("int8_speedup") or []),
            precision_choice=None if choice is None else PrecisionChoice.from_json(choice),
        )


@dataclass(frozen=True)
class RunnerFolder:
    """The device-runner folder written by `edgedistill.emit_runner` and the one line telling how to run it."""

    path: Path
    instructions: str


@dataclass(frozen=True)
class ReportResult(_Result):
    """The report's verdict, what it lacks, and the files written."""

    run: Path
    verdict: str
    missing: tuple[str, ...]
    markdown: Path
    json: Path
    plots: tuple[Path, ...]
    precision_choice: PrecisionChoice | None = None  # precision auto: what `bench` deployed and why

    @classmethod
    def from_dict(cls, run: Path, d: dict[str, Any]) -> ReportResult:
        from edgedistill.bench.choose import PrecisionChoice

        p = d["paths"]
        choice = d.get("precision_choice")
        return cls(
            raw=d,
            run=Path(run),
            verdict=d["verdict"],
            missing=tuple(d.get("missing", [])),
            markdown=Path(p["markdown"]),
            json=Path(p["json"]),
            plots=tuple(Path(x) for x in p.get("plots", [])),
            precision_choice=None if not choice else PrecisionChoice.from_json(choice),
        )
