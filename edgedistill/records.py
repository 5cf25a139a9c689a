"""Typed views of a run's own records (`train.json`, `search.json`), checked before any stage trusts them.

Records are edgedistill's output, so these models are lenient about keys they do not name (`extra="allow"`: newer
fields pass), but strict about the types and sizes of the fields that later stages read: a list element of the
wrong type, a width outside (0, 1] or a channel count no bank has is refused with `file: field.path: message`
before anything is allocated or written. File size and nesting are bounded by `config.read_json`.

Light on purpose (pydantic only): `report` reads run folders through it without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from edgedistill.config import read_json, validate_as

MAX_STAGES = 64  # stages of a bank (the largest shipped family has 7)
MAX_CHANNELS = 8192  # channels of one stage; a record claiming more is damaged, not a bigger model
MAX_LIST = 10_000  # candidates, log lines, teachers, history rows

Number = StrictInt | StrictFloat
Width = Annotated[Number, Field(gt=0, le=1)]
Channels = Annotated[StrictInt, Field(gt=0, le=MAX_CHANNELS)]
R = TypeVar("R", bound=BaseModel)


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class WidthChoice(_Record):
    """One width configuration with its cost and quality (the chosen subnet, a runner-up)."""

    config: list[Width] = Field(min_length=1, max_length=MAX_STAGES)
    channels: list[Channels] = Field(min_length=1, max_length=MAX_STAGES)
    macs: Number | None = None
    params: Number | None = None
    latency_ms: Number | None = None
    upem: Number | None = None
    upem_ci: list[Number] | None = Field(None, max_length=2)
    measured_ms: dict[str, Number] | None = None
    int8_agreement: Number | None = None
    test_accuracy: Number | None = None


class SearchRecord(_Record):
    """`search.json` / `searches/NAME.json`: the width choice for one budget."""

    budget: StrictStr
    chosen: WidthChoice
    runner_ups: list[WidthChoice] = Field(default_factory=list, max_length=MAX_LIST)
    measure_log: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_LIST)
    confidence: dict[str, Any] | None = None
    notes: list[StrictStr] = Field(default_factory=list, max_length=MAX_LIST)
    subnet: StrictStr | None = None
    subnet_sha256: StrictStr | None = None
    pareto: StrictStr | None = None
    latency_table: StrictStr | None = None


class TeacherRow(_Record):
    """One ranked teacher of `train.json`."""

    source: StrictStr
    name: StrictStr | None = None
    score: Number | None = None
    alpha: Number | None = None
    test_accuracy: Number | None = None


class TrainRecord(_Record):
    """`train.json`: what `train` did (the fields later stages and the report read; each may be absent)."""

    task: StrictStr | None = None
    budget: StrictStr | None = None
    data: dict[str, Any] | None = None
    distiller: StrictStr | None = None
    teachers: list[TeacherRow] = Field(default_factory=list, max_length=MAX_LIST)
    family: StrictStr | None = None
    steps: Annotated[StrictInt, Field(ge=0)] | None = None
    train_seconds: Number | None = None
    width_accuracy: dict[str, Number] | None = None
    chosen: WidthChoice | None = None
    universal: dict[str, Any] | None = None
    domain_sampling: dict[str, Any] | None = None
    history: list[dict[str, Any]] = Field(default_factory=list, max_length=1_000_000)


class AccuracyView(_Record):
    """The accuracy block of an artifact's manifest, as the report reads it."""

    fp32: Number | None = None
    quantized: Number | None = None
    artifact: Number | None = None
    drop_pts: Number | None = None
    agreement: Number | None = None
    balanced: Number | None = None
    fp32_balanced: Number | None = None
    per_class: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_LIST)


class CostView(_Record):
    macs: Number | None = None
    params: Number | None = None


class ManifestView(_Record):
    """An artifact's `manifest.json` as the report reads it (the full schema is `export.manifest.Manifest`)."""

    runtime: StrictStr
    precision: StrictStr
    accuracy: AccuracyView | None = None
    cost: CostView | None = None
    calibration: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    sensitivity: dict[str, Any] | None = None
    ladder: dict[str, Any] | None = None


class Timing(_Record):
    """One runner result (a `bench.json` result, a device-runner file), as the report reads it."""

    runtime: StrictStr
    precision: StrictStr
    stats: dict[str, Number | None]
    times_ms: list[Number] = Field(default_factory=list, max_length=10_000_000)
    device: StrictStr = "cpu"
    artifact: StrictStr | None = None
    peak_rss_mb: Number | None = None


class BenchView(_Record):
    """An artifact's `bench.json`, as the report reads it."""

    results: list[Timing] = Field(default_factory=list, max_length=MAX_LIST)
    budget: StrictStr | None = None
    verdict: StrictStr | None = None
    command: StrictStr | list[StrictStr] | None = None


def read_record(path: str | Path, model: type[R]) -> R:
    """Read a run record as `model`.

    Raises:
        ConfigError: missing, unreadable, too large or too deep, or a field of the wrong type or size
            (`path: field.path: message`).
    """
    return validate_as(model, read_json(path), str(path))
