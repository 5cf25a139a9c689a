"""Typed results of the Python API's stage calls: frozen dataclasses, each with the full JSON record in `raw`.

Imports nothing heavy: the typed fields are built from the JSON records the stages write, so a result can also be
read back from a run folder without torch (e.g. `TrainResult.from_dict(json.load(open("runs/demo/train.json")))`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgedistill.budget import ResolvedBudget
    from edgedistill.export.manifest import Manifest
    from edgedistill.export.sensitivity_schema import SensitivityReport
    from edgedistill.search.lut import LatencyLUT
    from edgedistill.search.select import Candidate


@dataclass(frozen=True)
class _Result:
    """Base: `raw` is the stage's JSON record (what it wrote to disk), `to_dict()` a copy of it."""

    raw: dict[str, Any] = field(repr=False, compare=False, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The full JSON summary of the stage (a copy)."""
        return dict(self.raw)


@dataclass(frozen=True)
class ChosenSubnet:
    """The widths chosen for a budget, their cost and test top-1 (%)."""

    config: tuple[float, ...]
    channels: tuple[int, ...]
    macs: int
    params: int
    test_accuracy: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChosenSubnet:
        return cls(tuple(d["config"]), tuple(d["channels"]), int(d["macs"]), int(d["params"]), d.get("test_accuracy"))


@dataclass(frozen=True)
class TeacherScore:
    """One teacher of a run: task similarity, weight α, its pseudo-labels' test top-1 and cache use."""

    source: str
    name: str
    score: float
    alpha: float
    cache_hit: bool | None = None
    test_accuracy: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherScore:
        """From one entry of train.json's `teachers` (other keys stay in `TrainResult.raw`)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class DomainScores:
    """Universal evaluation of one domain (%): top-1 over its own classes, the embedding's recall@1 and mAP@k."""

    top1: float
    recall_at_1: float
    map_at_k: float

    @classmethod
    def from_dict(cls, d: dict[str, Any], k: int) -> DomainScores:
        return cls(float(d["top1"]), float(d["recall_at_1"]), float(d[f"map_at_{k}"]))


def _universal(d: dict[str, Any], key: str) -> dict[str, DomainScores]:
    u = d.get("universal") or {}
    return {name: DomainScores.from_dict(s, int(u["map_k"])) for name, s in (u.get(key) or {}).items()}


@dataclass(frozen=True)
class TrainResult(_Result):
    """What `edgedistill.train` did: the run folder, per-width test top-1 (%), the chosen subnet, the teachers."""

    run: Path
    task: str
    budget: str
    family: str
    distiller: str
    device: str
    steps: int
    train_seconds: float
    width_accuracy: dict[str, float]
    chosen: ChosenSubnet | None  # None on torchrun ranks > 0
    similarity: str | None = None
    teachers: tuple[TeacherScore, ...] = ()
    skipped_images: int = 0
    skipped_list: Path | None = None  # the unreadable images skipped (data.on_corrupt: skip), one a line
    rank: int = 0  # torchrun: the other ranks return rank > 0 and no evaluation
    universal: dict[str, DomainScores] = field(default_factory=dict)  # labeled domains: the chosen subnet's
    universal_largest: dict[str, DomainScores] = field(default_factory=dict)  # ... and the largest width's
    domain_probabilities: dict[str, float] = field(default_factory=dict)  # the domain sampler's final p_d

    @property
    def bank(self) -> Path:
        return self.run / "bank.safetensors"

    @property
    def subnet(self) -> Path:
        return self.run / "subnet.safetensors"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        """From `train.json` (or what `train_run` returns)."""
        return cls(
            raw=d,
            run=Path(d["run"]),
            task=d.get("task", ""),
            budget=d.get("budget", ""),
            family=d.get("family", ""),
            distiller=d.get("distiller", ""),
            device=d.get("device", ""),
            steps=int(d.get("steps", 0)),
            train_seconds=float(d.get("train_seconds", 0.0)),
            width_accuracy=dict(d.get("width_accuracy", {})),
            chosen=ChosenSubnet.from_dict(d["chosen"]) if d.get("chosen") else None,
            similarity=d.get("similarity"),
            teachers=tuple(TeacherScore.from_dict(t) for t in d.get("teachers", [])),
            skipped_images=int((d.get("data") or {}).get("skipped_images", 0) or 0),
            skipped_list=Path(d["data"]["skipped_list"]) if (d.get("data") or {}).get("skipped_list") else None,
            rank=int(d.get("rank", 0)),
            universal=_universal(d, "subnet"),
            universal_largest=_universal(d, "largest"),
            domain_probabilities=dict((d.get("domain_sampling") or {}).get("probabilities", {})),
        )


@dataclass(frozen=True)
class SearchResult(_Result):
    """Widths chosen for a budget (`chosen`, then `runner_ups`), with where the choice was written."""

    run: Path
    budget: str
    strategy: str
    upem: str
    chosen: Candidate
    runner_ups: tuple[Candidate, ...]
    measured: tuple[Candidate, ...]
    evaluated: int  # feasible configs scored
    space: int
    rejected: int  # configs rejected by the cost models
    seconds: float
    measure_seconds: float
    notes: tuple[str, ...]
    latency_stat: str  # the statistic the budget limits (its first latency limit), p90 when none
    json: Path
    subnet: Path
    plot: Path
    resolved: ResolvedBudget | None = field(default=None, repr=False, compare=False)
    measure_log: tuple[dict[str, Any], ...] = ()  # every end-to-end measurement in order: config, latency, fits, why
    confidence: dict[str, Any] | None = None  # the UPEM intervals' bootstrap, and the runner-ups within the noise


@dataclass(frozen=True)
class ProfileResult:
    """The latency table (`lut`) of a run's bank and where it was written."""

    path: Path
    lut: LatencyLUT = field(repr=False)

    @property
    def blocks(self) -> int:
        return len(self.lut.blocks)

    @property
    def overhead_p50_ms(self) -> float:
        return float(self.lut.overhead_ms["p50"])


@dataclass(frozen=True)
class ExportResult:
    """The exported artifacts: the FP32 ONNX reference first, then the target (when it is not FP32)."""

    run: Path
    manifests: tuple[Manifest, ...]
    notes: tuple[str, ...] = ()  # precision auto: skipped precisions, candidates over the accuracy budget

    @property
    def artifacts(self) -> tuple[Path, ...]:
        """Artifact folders, as `manifests`."""
        return tuple(self.run / "export" / m.name for m in self.manifests)

    @property
    def artifact(self) -> Path:
        """The target's artifact folder (the last one)."""
        return self.artifacts[-1]

    @property
    def manifest(self) -> Manifest:
        """The target's manifest (the last one)."""
        return self.manifests[-1]

    @property
    def sensitivity(self) -> SensitivityReport | None:
        """The target's per-layer INT8 sensitivity report (None for a float target or when turned off)."""
        return self.manifest.sensitivity

    def to_dict(self) -> dict[str, Any]:
        manifests = [m.model_dump(mode="json") for m in self.manifests]
        return {"run": str(self.run), "manifests": manifests, "notes": list(self.notes)}


@dataclass(frozen=True)
class RankedTeacher:
    """One teacher of the ranking: its feature size, a score per metric, distill-weighted's weight α."""

    source: str
    name: str
    feature_dim: int
    scores: dict[str, float]
    alpha: float


@dataclass(frozen=True)
class TeacherRanking:
    """A task's teachers, best first by the first metric."""

    task: str
    metrics: tuple[str, ...]
    teachers: tuple[RankedTeacher, ...]


@dataclass(frozen=True)
class FinetuneResult(_Result):
    """The fine-tune-a-teacher baseline: which teacher, how long, its test top-1 (%)."""

    task: str
    source: str
    similarity: float | None
    labeled: int
    steps: int
    seconds: float
    test_accuracy: float
    out: Path | None = None


@dataclass(frozen=True)
class BudgetEntry:
    """One budget file: the loaded budget, or why it is invalid."""

    path: Path
    budget: ResolvedBudget | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BudgetList:
    """Every budget file of a folder (or the one file), valid or not."""

    path: Path
    entries: tuple[BudgetEntry, ...]

    @property
    def valid(self) -> bool:
        return all(e.valid for e in self.entries)

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(e.error for e in self.entries if e.error is not None)
