"""`manifest.json` `ladder`: the post-training rungs `--fallback auto` climbed (`ladder_export.py`)."""

from __future__ import annotations

from pydantic import Field

from edgedistill.config import StrictModel


class RungInfo(StrictModel):
    """One post-training rung of `--fallback auto` and what its all-INT8 artifact measured on the test split."""

    rung: str = Field(description="ptq (plain post-training INT8), bias_correction or adaround")
    drop_pts: float
    agreement: float | None = Field(None, description="top-1 agreement with FP32, %")
    seconds: float = Field(ge=0, description="the rung's weight changes (the export and accuracy check not counted)")
    fits: bool


class LadderInfo(StrictModel):
    """The post-training rungs `--fallback auto` climbed before mixed precision and QAD."""

    method: str
    images: int = Field(ge=1, description="calibration images the rungs measured layer errors on")
    chosen: str | None = Field(
        description="the rung kept (its all-INT8 artifact fits); null: none fit, the later steps start from the subnet"
    )
    rungs: list[RungInfo]
