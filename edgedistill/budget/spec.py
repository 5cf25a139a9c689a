"""The device budget: what a student must fit (latency, memory, params, MACs) and where it runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from edgedistill.config import Float, Int, NotBool, SafeName, StrictModel
from edgedistill.recipe import Recipe
from edgedistill.runtimes import Runtime, check_runtime_precision, runtime_spec

Percentile = Literal["p50", "p90", "p99", "mean"]
TargetPrecision = Literal["fp32", "fp16", "int8", "auto"]
AUTO = "auto"  # export every precision the runtime runs; `bench` deploys the fastest within the accuracy budget


class Device(StrictModel):
    """Where the model will run (informational, shown in reports)."""

    family: Literal["x86", "arm", "jetson", "other"]
    accelerator: Literal["cpu", "gpu", "npu"] = "cpu"
    notes: str = ""
    isa: Literal["auto", "avx512-vnni", "avx-vnni", "avx512", "avx2", "arm-dotprod", "arm", "other"] = Field(
        "auto",
        description="INT8 instruction set, for recipes' `reduce_range: auto`; auto: the exporting machine's when it "
        "has the family's architecture, else the family's default",
    )


class Target(StrictModel):
    """Runtime, precision and export recipe; threads/batch used when benchmarking."""

    runtime: Runtime
    precision: TargetPrecision = Field(description="fp32 | fp16 | int8, or auto: bench deploys the fastest that fits")
    recipe: str = Field(
        description="export recipe: a shipped name (`onnxruntime-int8`) or a YAML path relative to the budget file "
        "(precision auto: the int8 recipe)"
    )
    threads: Int = Field(1, ge=1, le=256)

    @model_validator(mode="after")
    def _runtime_has_precision(self) -> Target:
        if self.precision == AUTO:
            if "int8" not in runtime_spec(self.runtime).precisions:
                raise ValueError(f"precision auto needs a runtime with an int8 export; {self.runtime} runs fp32 only")
            return self
        check_runtime_precision(self.runtime, self.precision)
        return self


class InputSpec(StrictModel):
    """Model input, NCHW."""

    height: Int = Field(gt=0, le=4096)
    width: Int = Field(gt=0, le=4096)
    channels: Annotated[Literal[1, 3], NotBool] = 3
    batch: Int = Field(1, ge=1, le=1024)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(batch, channels, height, width)."""
        return (self.batch, self.channels, self.height, self.width)


class LatencyLimit(StrictModel):
    """Latency limits in milliseconds at one or more percentiles."""

    p50: Float | None = Field(None, gt=0)
    p90: Float | None = Field(None, gt=0)
    p99: Float | None = Field(None, gt=0)
    mean: Float | None = Field(None, gt=0)

    def items(self) -> list[tuple[str, float]]:
        """The set limits as (statistic, ms)."""
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


class Limits(StrictModel):
    """Hard limits; any of them may be omitted."""

    latency_ms: LatencyLimit | None = None
    params_m: Float | None = Field(None, gt=0, description="millions of parameters")
    macs_m: Float | None = Field(None, gt=0, description="millions of multiply-accumulates per image")
    peak_memory_mb: Float | None = Field(None, gt=0, description="peak resident memory of the runtime process")


class AccuracyPolicy(StrictModel):
    """Accuracy guard for reduced precision."""

    max_int8_drop_pts: Float = Field(
        1.0, ge=0, le=100, description="largest FP32 → INT8 (and, under precision auto, FP16) test accuracy drop"
    )
    metric: Literal["top1", "balanced"] = Field(
        "top1",
        description="what the drop compares: top1, or balanced (the mean of the per-class accuracies: an unbalanced "
        "task's rare classes count as much as its common ones)",
    )


class Budget(StrictModel):
    """A device budget file (`budgets/*.yaml`)."""

    name: SafeName
    description: str = ""
    device: Device
    target: Target
    input: InputSpec
    limits: Limits
    accuracy: AccuracyPolicy = Field(default_factory=AccuracyPolicy)
    cost_model: Literal["macs", "params"] = "macs"


class ResolvedBudget(StrictModel):
    """A validated budget with its recipe loaded and the path it came from."""

    path: str
    budget: Budget
    recipe: Recipe
