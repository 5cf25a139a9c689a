"""Export recipes: how one runtime/precision artifact is produced; read by budgets and export.

The shipped recipes live in the package (`edgedistill/resources/recipes/NAME.yaml`) and are named by their stem
(`onnxruntime-int8`); a user's own recipe is a YAML path. Lookups never depend on the working directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from edgedistill.config import (
    MAX_BATCH,
    Float,
    Int,
    SafeName,
    Seed,
    StrictModel,
    load_yaml_model,
    parse_yaml,
    validate_as,
)
from edgedistill.errors import ConfigError
from edgedistill.registry import unknown_name
from edgedistill.runtimes import Precision, Runtime, check_runtime_precision


class Calibration(StrictModel):
    """Calibration set for static post-training quantization."""

    method: Literal["minmax", "percentile", "entropy"] = "minmax"
    samples: Int = Field(300, gt=0)
    percentile: Float = Field(99.999, gt=50, le=100)


class Sensitivity(StrictModel):
    """Per-layer INT8 sensitivity report written with every INT8 export (`manifest.json` `sensitivity`)."""

    images: Int = Field(256, ge=0, description="unlabeled pool images it is measured on; 0 turns the report off")
    top_k: Int = Field(
        8,
        ge=0,
        description="layers (lowest local SQNR first) whose single-layer disagreement is measured; 0: SQNR only",
    )


Rung = Literal["bias_correction", "adaround"]  # in the default order: the cheap rung first


class Ladder(StrictModel):
    """The post-training rungs `--fallback auto` climbs before mixed precision and QAD (`export/ptq_ladder.py`)."""

    rungs: list[Rung] = Field(
        default_factory=lambda: list(get_args(Rung)),
        max_length=2,
        description="tried in this order; the first whose drop fits accuracy.max_int8_drop_pts is kept ([]: none)",
    )
    images: Int = Field(128, ge=1, le=MAX_BATCH, description="calibration images the rungs measure layer errors on")
    adaround_iterations: Int = Field(200, ge=1, le=100_000, description="AdaRound optimisation steps per layer")
    seed: Seed = 0

    @model_validator(mode="after")
    def _distinct(self) -> Ladder:
        if len(set(self.rungs)) != len(self.rungs):
            raise ValueError(f"rungs: each rung at most once, got {self.rungs}")
        return self


class Quantization(StrictModel):
    """Static INT8 quantization settings."""

    format: Literal["qdq"] = "qdq"
    activations: Literal["uint8", "int8"] = "uint8"
    weights: Literal["int8"] = "int8"
    per_channel: bool = True
    symmetric_activations: bool = False
    reduce_range: bool | Literal["auto"] = Field(
        False,
        description="7-bit weights: avoids int16 saturation of u8s8 kernels on x86 CPUs without VNNI "
        "(measured here: per-channel INT8 lost 4.8 pts without it, 0.04 pts with it); auto: only on such CPUs "
        "(the budget's device.isa, edgedistill/isa.py)",
    )
    calibration: Calibration = Field(default_factory=Calibration)
    bias_correction: bool = Field(True, description="NNCF (OpenVINO) only: fast bias correction after calibration")
    sensitivity: Sensitivity = Field(default_factory=Sensitivity)
    ladder: Ladder = Field(default_factory=Ladder)

    @model_validator(mode="after")
    def _symmetric_is_signed(self) -> Quantization:
        if self.symmetric_activations and self.activations != "int8":
            raise ValueError("symmetric_activations needs activations: int8 (zero point 0)")
        return self


class QADSettings(StrictModel):
    """Quantization-aware distillation (`--fallback qat`, or `auto` when PTQ and mixed precision miss the budget)."""

    steps: Int = Field(300, ge=1, description="fine-tuning steps of the fake-quantized subnet")
    lr: Float = Field(1e-4, gt=0, le=0.1, description="Adam learning rate (small: the FP32 subnet is the start)")
    batch: Int = Field(64, ge=1, le=MAX_BATCH, description="unlabeled pool images per step")
    images: Int = Field(2000, ge=1, description="unlabeled pool images drawn for fine-tuning (all of a smaller pool)")
    temperature: Float = Field(2.0, gt=0, description="softening of the FP32 subnet's and the teachers' logits")
    teacher_weight: Float = Field(
        0.1, ge=0, description="weight of the KD term to the run's cached teacher targets (0: FP32 subnet only)"
    )
    seed: Seed = Field(0, description="image draw and batch order")


class AccuracyControlLimits(StrictModel):
    """How far NNCF accuracy control may go (OpenVINO INT8: `accuracy_control: true`, or `--fallback auto`)."""

    max_reverted: Int = Field(
        12,
        ge=1,
        description="quantizer groups reverted to float at most (one per NNCF iteration, each re-validated); past it "
        "NNCF keeps the best model so far and `--fallback auto` goes on to QAD",
    )
    ranking_images: Int = Field(100, ge=1, description="label-free validation images NNCF ranks the groups on")


class TensorRTBuild(StrictModel):
    """Engine build settings (TensorRT Python API and the generated `build_engine.sh`)."""

    workspace_mb: Int = Field(1024, gt=0, description="builder workspace memory-pool limit")
    timing_cache: str = Field("timing.cache", min_length=1, description="file next to the engine, reused across builds")


class Recipe(StrictModel):
    """One export recipe (shipped: `onnxruntime-int8`, ...; or a user's YAML file)."""

    name: SafeName
    runtime: Runtime
    precision: Precision
    variant: str | None = Field(
        None, pattern=r"^[a-z0-9]+$", description="suffix of the artifact folder, e.g. 'ac' → openvino-int8-ac"
    )
    opset: Int = Field(18, ge=17, le=23)
    dynamic_batch: bool = True
    quantization: Quantization | None = None
    accuracy_control: bool = Field(
        False, description="OpenVINO: nncf.quantize_with_accuracy_control within the budget's max drop"
    )
    accuracy_control_limits: AccuracyControlLimits = Field(default_factory=AccuracyControlLimits)
    tensorrt: TensorRTBuild | None = None
    qad: QADSettings | None = Field(None, description="QAD settings (int8 only); None: the QADSettings defaults")

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        check_runtime_precision(self.runtime, self.precision)
        if self.precision == "int8" and self.quantization is None:
            raise ValueError("precision int8 needs a 'quantization' section")
        if self.precision != "int8" and self.quantization is not None:
            raise ValueError(f"'quantization' is only valid with precision int8, not {self.precision}")
        if self.accuracy_control and (self.runtime, self.precision) != ("openvino", "int8"):
            raise ValueError("accuracy_control is only available for runtime openvino, precision int8")
        if self.qad is not None and self.precision != "int8":
            raise ValueError(f"'qad' (quantization-aware distillation) needs precision int8, not {self.precision}")
        if self.tensorrt is not None and self.runtime != "tensorrt":
            raise ValueError(f"'tensorrt' build settings need runtime tensorrt, not {self.runtime}")
        return self

    @property
    def target(self) -> str:
        """Artifact folder and exporter name, e.g. `onnxruntime-int8`, `openvino-int8-ac`."""
        base = f"{self.runtime}-{self.precision}"
        return f"{base}-{self.variant}" if self.variant else base


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe YAML."""
    return load_yaml_model(path, Recipe)


def builtin_recipes() -> list[str]:
    """Names of the shipped recipes (`onnx-fp32`, `onnxruntime-int8`, ...), sorted."""
    folder = resources.files("edgedistill.resources.recipes")
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def is_recipe_name(ref: str) -> bool:
    """True for a shipped recipe's name, as opposed to a path (`my-recipes/x.yaml`)."""
    return "/" not in ref and "\\" not in ref and not ref.endswith((".yaml", ".yml"))


def builtin_recipe(name: str) -> Recipe:
    """A shipped recipe by name.

    Raises:
        ConfigError: No shipped recipe has that name (the error lists them).
    """
    names = builtin_recipes()
    if name not in names:
        raise ConfigError(f"{unknown_name('shipped recipe', name, names)} (or give a .yaml path)")
    text = resources.files("edgedistill.resources.recipes").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return validate_as(Recipe, parse_yaml(text, f"recipe {name}"), f"recipe {name}")


def resolve_recipe(ref: str | Path, base: Path | None = None) -> Recipe:
    """A recipe from a shipped name or a YAML path (relative to `base` when given, else to the working directory)."""
    if isinstance(ref, str) and is_recipe_name(ref):
        return builtin_recipe(ref)
    path = Path(ref)
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        shipped = ", ".join(builtin_recipes())
        raise ConfigError(f"file not found: {ref} (looked in {path}; or name a shipped recipe: {shipped})")
    return load_recipe(path)
