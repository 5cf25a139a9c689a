"""The artifact manifest (`manifest.json`): everything needed to run and trust an exported model."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edgedistill.config import SafeName, StrictModel, format_validation_error, read_json
from edgedistill.errors import ConfigError, ExportError
from edgedistill.export.inspect import ModelFacts, check_model_file
from edgedistill.export.ladder_schema import LadderInfo
from edgedistill.export.sensitivity_schema import SensitivityReport
from edgedistill.io import atomic_write_json, sha256_file, sha256_problem
from edgedistill.runtimes import Precision, Runtime

MANIFEST_NAME = "manifest.json"


def _relative(name: str) -> str:
    """Artifact files are named relative to the artifact dir, never outside it."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise ValueError(f"'{name}' must be a relative path inside the artifact directory")
    return name


class InputInfo(StrictModel):
    """The model input tensor."""

    name: str = "input"
    shape: list[int] = Field(description="NCHW; batch is -1 when dynamic")
    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW"] = "NCHW"

    @field_validator("shape")
    @classmethod
    def _nchw(cls, v: list[int]) -> list[int]:
        if len(v) != 4 or v[0] == 0 or v[0] < -1 or min(v[1:]) < 1:
            raise ValueError("must be [N, C, H, W] with N = -1 (dynamic) or >= 1")
        return v


class Preprocess(StrictModel):
    """How raw images become the input: resize, crop, `x * scale`, then `(x - mean) / std` per channel."""

    scale: float = Field(1 / 255, gt=0)
    mean: list[float]
    std: list[float]
    channels: Literal[1, 3]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    resize: int | None = Field(None, gt=0, description="shorter side before the centre crop; None: resize directly")

    @model_validator(mode="after")
    def _per_channel(self) -> Preprocess:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need {self.channels} values (one per channel)")
        if min(self.std) <= 0:
            raise ValueError("std values must be > 0")
        return self


class Source(StrictModel):
    """The trained subnet this artifact came from."""

    family: str
    config: list[float] = Field(description="width multipliers chosen by the search")
    channels: list[int]
    subnet_sha256: str


class CalibrationInfo(StrictModel):
    """The INT8 calibration set."""

    count: int = Field(gt=0)
    sha256: str = Field(description="of the float32 calibration array's bytes")
    method: Literal["minmax", "percentile", "entropy"]
    source: str = Field(description="where the images came from, e.g. 'train/unlabeled'")


class IsaInfo(StrictModel):
    """The instruction set an INT8 artifact's settings were chosen for (`reduce_range: auto`, edgedistill/isa.py)."""

    isa: str = Field(description="avx512-vnni | avx-vnni | avx512 | avx2 | arm-dotprod | arm | other")
    source: str = Field(description="the budget's device.isa, or how `auto` found it")
    reduce_range: bool = Field(description="7-bit weights (x86 u8s8 kernels without VNNI saturate in int16)")


class ClassAccuracy(StrictModel):
    """One class of the test split: how many images, and the percent of them each model gets right."""

    name: str
    n: int = Field(ge=0)
    fp32: float = Field(ge=0, le=100)
    artifact: float | None = Field(None, ge=0, le=100)


class AccuracyInfo(StrictModel):
    """Held-out top-1 (percent) of the FP32 reference and of the shipped model when quantized."""

    split: str
    n: int = Field(gt=0)
    fp32: float = Field(ge=0, le=100)
    quantized: float | None = Field(None, ge=0, le=100)
    metric: Literal["top1", "balanced"] = Field(
        "top1", description="what `drop_pts` compares (the budget's accuracy.metric)"
    )
    drop_pts: float | None = None
    fp32_balanced: float | None = Field(None, ge=0, le=100, description="mean of the FP32 per-class accuracies")
    balanced: float | None = Field(None, ge=0, le=100, description="mean of this artifact's per-class accuracies")
    per_class: list[ClassAccuracy] = Field(default_factory=list)
    agreement: float | None = Field(None, ge=0, le=100, description="top-1 agreement with FP32, percent")
    artifact: float | None = Field(
        None, ge=0, le=100, description="top-1 of this artifact in its own runtime (FP16/FP32 in another runtime)"
    )


class EngineInfo(StrictModel):
    """TensorRT engine: built here (`file`) or left to `build_script` on the device (`file` null, `reason`)."""

    file: str | None = None
    reason: str | None = None
    build_script: str
    tensorrt: str | None = Field(None, description="version that built `file`")
    workspace_mb: int = Field(gt=0)
    timing_cache: str


class FallbackInfo(StrictModel):
    """Mixed precision chosen by `--fallback auto`: the most sensitive layers kept in float."""

    method: str
    layers_in_fp: list[str]
    quantizable_layers: int = Field(ge=0)
    drop_before_pts: float
    drop_after_pts: float
    fixed: bool = Field(description="the drop fits the budget after the fallback")
    sensitivity: dict[str, float] = Field(
        default_factory=dict, description="layer → local SQNR (dB) in the all-INT8 model, most sensitive (lowest) first"
    )
    latency_p50_ms: dict[str, float] = Field(default_factory=dict, description="all-INT8 vs mixed, own processes")
    latency_note: str | None = None


class QADInfo(StrictModel):
    """Quantization-aware distillation that produced this artifact's weights (`--fallback qat`, or `auto`)."""

    method: str = Field(description="fake-quant scheme, loss and the exporter the fine-tuned weights went through")
    trigger: str = Field(description="why QAD ran: asked (fallback qat) or auto (the earlier steps missed)")
    steps: int = Field(ge=1)
    images: int = Field(ge=1, description="unlabeled pool images fine-tuned on")
    seed: int
    lr: float
    batch: int
    temperature: float
    teacher_weight: float
    teachers: list[str] = Field(default_factory=list, description="cached teacher targets used")
    teachers_skipped: list[str] = Field(default_factory=list)
    bn: Literal["folded", "frozen"]
    layers: int = Field(ge=0, description="Conv/Linear layers fake-quantized")
    seconds: float = Field(ge=0)
    drop_before_pts: float = Field(description="test top-1 drop of the INT8 export without QAD")
    drop_after_pts: float | None = Field(None, description="the same for this artifact")
    agreement_before_pct: float | None = Field(
        None, description="test top-1 agreement with FP32 of the INT8 export without QAD (after: accuracy.agreement)"
    )
    parity: dict[str, float] = Field(
        default_factory=dict, description="artifact vs its fake-quant torch model on pool images"
    )
    history: list[dict[str, float]] = Field(default_factory=list, description="loss terms every 50 steps")


class Cost(StrictModel):
    """Per-image compute and size."""

    macs: int = Field(ge=0)
    params: int = Field(ge=0)


class Manifest(StrictModel):
    """`manifest.json` of one artifact directory."""

    format_version: Literal[1] = 1
    name: SafeName
    runtime: Runtime
    precision: Precision
    model_file: str
    files: dict[str, str] = Field(default_factory=dict, description="relative path → sha256")
    input: InputInfo
    preprocess: Preprocess
    class_names: list[str]
    source: Source
    opset: int | None = None
    versions: dict[str, str]
    calibration: CalibrationInfo | None = None
    isa: IsaInfo | None = None
    accuracy: AccuracyInfo
    cost: Cost
    budget: str | None = None
    created: str
    engine: EngineInfo | None = None
    fallback: FallbackInfo | None = None
    sensitivity: SensitivityReport | None = None
    qad: QADInfo | None = None
    ladder: LadderInfo | None = None
    notes: dict[str, str] = Field(default_factory=dict)

    @field_validator("model_file")
    @classmethod
    def _model_relative(cls, v: str) -> str:
        return _relative(v)

    @field_validator("files")
    @classmethod
    def _files_relative(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            _relative(name)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.precision == "int8" and self.calibration is None:
            raise ValueError("an int8 artifact needs its 'calibration' record")
        return self


def write_manifest(artifact_dir: Path, manifest: Manifest) -> Path:
    """Hash the model file and every file listed in `manifest.files`, then write `manifest.json` atomically.

    Returns:
        The manifest path.

    Raises:
        ExportError: A listed file is missing.
    """
    artifact_dir = Path(artifact_dir)
    files = {}
    for name in sorted({manifest.model_file, *manifest.files}):
        path = artifact_dir / name
        if not path.is_file():
            raise ExportError(f"{path}: listed in the manifest but missing")
        files[name] = sha256_file(path)
    data = manifest.model_copy(update={"files": files}).model_dump(mode="json")
    return atomic_write_json(artifact_dir / MANIFEST_NAME, data)


def read_manifest(artifact_dir: Path, verify: bool = True) -> Manifest:
    """Load and validate `manifest.json`; with `verify`, check every listed file's sha256.

    Raises:
        ExportError: Missing directory, manifest or file, invalid manifest, or a sha256 mismatch
            (one line naming the file).
    """
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / MANIFEST_NAME
    if not artifact_dir.is_dir():
        raise ExportError(f"{artifact_dir}: artifact directory not found")
    if path.is_symlink() or not path.is_file():
        raise ExportError(f"{path}: manifest not found (or not a regular file)")
    try:
        manifest = Manifest.model_validate(read_json(path))
    except ConfigError as e:  # not JSON, duplicate keys, non-finite numbers, too deep
        raise ExportError(str(e)) from None
    except ValidationError as e:
        raise ExportError(format_validation_error(str(path), e)) from None
    if manifest.model_file not in manifest.files:
        raise ExportError(f"{path}: no sha256 recorded for the model file {manifest.model_file}")
    if verify:
        for name, expected in manifest.files.items():
            problem = regular_file_problem(artifact_dir, name) or sha256_problem(artifact_dir / name, expected)
            if problem:
                raise ExportError(problem)
        claimed = ModelFacts(
            quantized=manifest.precision == "int8",
            input_name=manifest.input.name,
            input_shape=manifest.input.shape,
            output_width=len(manifest.class_names),
            opset=manifest.opset,
        )
        check_model_file(artifact_dir / manifest.model_file, claimed, manifest.precision)
    return manifest


def regular_file_problem(artifact_dir: Path, name: str) -> str | None:
    """Why `artifact_dir/name` is not a regular file inside the artifact folder (a symlink, a pipe), or None."""
    path = Path(artifact_dir) / name
    for p in [path, *path.parents]:
        if p == Path(artifact_dir):
            break
        if p.is_symlink():
            return f"{p}: is a symbolic link; artifact files must be regular files inside {artifact_dir}"
    if path.exists() and not path.is_file():
        return f"{path}: not a regular file; artifact files must be regular files"
    return None
