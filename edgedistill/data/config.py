"""Data configs (task YAML `data:` section): the target dataset, its extra labeled and unlabeled domains."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from edgedistill.config import Float, Int, NotBool, Seed, StrictModel


class DomainConfig(StrictModel):
    """One more unlabeled domain (an entry of `data.extra_unlabeled`)."""

    source: str = Field(
        description="registered unlabeled source: mnist | optdigits | usps-samples | svhn-samples | imagefolder"
    )
    name: str | None = Field(None, description="name in run records (default: the source; imagefolder:<folder>)")
    root: str | None = Field(None, description="imagefolder: folder searched at any depth for images (no labels)")
    images: Int | None = Field(None, ge=1, description="seeded subsample of this many images (None = all)")
    box: Int | None = Field(
        None, ge=1, description="resize into a box×box square centred in the target's frame (None = the whole frame)"
    )
    invert: bool = Field(False, description="255 − pixels, to match the target's polarity")
    on_corrupt: Literal["error", "skip"] = Field("error", description="imagefolder: unreadable image fails, or skip")


class LabeledDomainConfig(StrictModel):
    """One more labeled domain (an entry of `data.domains`): its own classes, labels, unlabeled pool and test split."""

    source: str = Field(description="registered target dataset: mnist | optdigits | ising | imagefolder")
    name: str | None = Field(None, description="name in run records and class names (default: the source)")
    root: str | None = Field(None, description="imagefolder: folder with train/<class>/ and test/<class>/")
    image_size: Int | None = Field(None, gt=0, le=4096, description="imagefolder: resize to this square size on load")
    labels_per_class: Int = Field(10, ge=1, description="labeled images per class, from the domain's train split")
    unlabeled: Int | None = Field(None, ge=1, description="subsample the domain's unlabeled pool to this many images")
    test: Int | None = Field(None, ge=1, description="subsample the domain's test split")
    box: Int | None = Field(
        None, ge=1, description="resize into a box×box square centred in the target's frame (None = the whole frame)"
    )
    invert: bool = Field(False, description="255 − pixels, to match the target's polarity")
    on_corrupt: Literal["error", "skip"] = Field("error", description="imagefolder: unreadable image fails, or skip")


class DataConfig(StrictModel):
    """Which target data to use and how to split it."""

    source: str = Field(
        "mnist", description="registered target: mnist | optdigits | ising | groceries | groceries-coarse | imagefolder"
    )
    root: str | None = Field(None, description="ImageFolder root (imagefolder only)")
    channels: Annotated[Literal[1, 3], NotBool] = 3
    image_size: Int | None = Field(
        None, gt=0, le=4096, description="ImageFolder: resize images to this square size on load"
    )
    labels_per_class: Int = Field(10, ge=1)
    unlabeled: Int | None = Field(None, ge=1, description="subsample the target's unlabeled pool to this many images")
    test: Int | None = Field(None, ge=1, description="subsample the test split")
    seed: Seed = 0
    mean: list[Float] | None = None
    std: list[Float] | None = None
    on_corrupt: Literal["error", "skip"] = Field(
        "error", description="ImageFolder: an unreadable image fails the run, or is skipped and listed"
    )
    extra_unlabeled: list[DomainConfig] = Field(
        default_factory=list,
        description="more unlabeled domains (UDON): the target's pool is domain 0, entry i is domain i + 1",
    )
    domains: list[LabeledDomainConfig] = Field(
        default_factory=list,
        description="more labeled domains (a universal student, UDON): the target is domain 0, entry i is domain "
        "i + 1; each has its own classes, labels, unlabeled pool and test split",
    )
    label_space: Literal["per-domain", "shared"] = Field(
        "per-domain",
        description="with data.domains: per-domain (every domain its own classes, named <domain>/<class>) or shared "
        "(domains whose class names match share a class)",
    )

    @model_validator(mode="after")
    def _stats_per_channel(self) -> DataConfig:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (1, self.channels):
                raise ValueError(f"{name}: needs 1 or {self.channels} values (data.channels), got {values}")
        if self.std is not None and min(self.std, default=1.0) <= 0:
            raise ValueError("std: values must be > 0")
        if self.domains and self.extra_unlabeled:
            raise ValueError(
                "data.domains cannot be combined with data.extra_unlabeled (every labeled domain brings its own "
                "unlabeled pool); drop one of them"
            )
        return self
