"""In-memory image sets (uint8 NCHW) and the task container built from them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from edgedistill.errors import DataError


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N, C, H, W) with optional int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> ImageSet:
        """Rows `idx`, labels kept."""
        return ImageSet(self.images[idx], None if self.labels is None else self.labels[idx])

    def fingerprint(self) -> str:
        """sha256 over shape, pixels and labels: identifies exactly this set."""
        h = hashlib.sha256(repr(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class TaskData:
    """A target task: few labeled images, an unlabeled pool and a held-out test split.

    With extra unlabeled domains (`data.extra_unlabeled`), `unlabeled` is the merged pool and `domains` gives each
    image's domain (0 = the target's own pool, named `domain_names[0]`). Calibration and BN-recalibration images
    come from the target's own unlabeled images (`target_unlabeled`), never from test or another domain.

    With labeled domains (`data.domains`, a universal student), every domain is a target: `labeled`, `unlabeled` and
    `test` are the domains' sets concatenated, `labeled_domains`/`domains`/`test_domains` give each image's domain,
    labels are indices into the universal `class_names`, and `domain_classes[d]` lists domain d's classes in its own
    label order. Calibration then draws from every domain's unlabeled pool (`target_domains` = the domain count).
    """

    name: str
    class_names: list[str]
    labeled: ImageSet
    unlabeled: ImageSet
    test: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # unreadable source files left out ("path\treason")
    domains: np.ndarray | None = None  # domain index of every unlabeled image; None: one domain
    domain_names: list[str] = field(default_factory=list)
    labeled_domains: np.ndarray | None = None  # domain index of every labeled image (labeled domains only)
    test_domains: np.ndarray | None = None  # domain index of every test image (labeled domains only)
    domain_classes: list[list[int]] = field(default_factory=list)  # per labeled domain: its classes' indices
    target_domains: int = 1  # leading domains whose unlabeled images are the target's (calibration)

    def __post_init__(self) -> None:
        if self.domains is not None and (
            self.domains.shape != (len(self.unlabeled),)
            or len(self.domain_names) != int(self.domains.max(initial=-1)) + 1
        ):
            raise DataError(
                f"domains: need one index per unlabeled image ({len(self.unlabeled)}) and a name per domain, got "
                f"{self.domains.shape} indices and {len(self.domain_names)} names"
            )
        if self.labeled_domains is not None:
            sets = {"labeled": (self.labeled_domains, self.labeled), "test": (self.test_domains, self.test)}
            for what, (index, images) in sets.items():
                if index is None or index.shape != (len(images),):
                    raise DataError(f"labeled domains: need one domain index per {what} image ({len(images)})")
            if len(self.domain_classes) != len(self.domain_names) or self.target_domains != len(self.domain_names):
                raise DataError(
                    f"labeled domains: {len(self.domain_names)} domains, {len(self.domain_classes)} class lists, "
                    f"{self.target_domains} target domains"
                )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.labeled.images.shape[1])

    @property
    def universal(self) -> bool:
        """Whether the task has several labeled domains (`data.domains`): a universal student."""
        return self.labeled_domains is not None

    def target_rows(self) -> np.ndarray:
        """Indices into `unlabeled` of the target's own images (domains < `target_domains`; all with one domain)."""
        if self.domains is None:
            return np.arange(len(self.unlabeled))
        return np.flatnonzero(self.domains < self.target_domains)

    @cached_property
    def target_unlabeled(self) -> ImageSet:
        """The target's own unlabeled images (domain 0, or every labeled domain; the whole pool with one domain)."""
        if self.domains is None:
            return self.unlabeled
        return self.unlabeled.subset(self.target_rows())

    def calibration_indices(self, n: int, seed: int = 0) -> np.ndarray:
        """Sorted indices into `target_unlabeled` of the `n` images `calibration(n, seed)` draws."""
        pool = self.target_unlabeled
        if n > len(pool):
            raise DataError(f"asked for {n} calibration images, the target's unlabeled pool has {len(pool)}")
        return np.sort(np.random.default_rng(seed).choice(len(pool), size=n, replace=False))

    def calibration(self, n: int, seed: int = 0) -> ImageSet:
        """`n` images drawn without replacement from the target's own unlabeled images (seeded)."""
        return self.target_unlabeled.subset(self.calibration_indices(n, seed))

    def summary(self) -> dict[str, object]:
        """Sizes and identity, for run records."""
        return {
            "name": self.name,
            "classes": self.num_classes,
            "labeled": len(self.labeled),
            "unlabeled": len(self.unlabeled),
            "test": len(self.test),
            "image_shape": list(self.labeled.images.shape[1:]),
            "labeled_sha256": self.labeled.fingerprint(),
            "skipped_images": len(self.skipped),
            **self.notes,
        } | ({"domains": self.domain_counts()} if self.domains is not None else {})

    def domain_counts(self) -> list[dict[str, object]]:
        """Name and unlabeled-image count of every domain (domain 0 first); [] with one domain."""
        if self.domains is None:
            return []
        counts = np.bincount(self.domains, minlength=len(self.domain_names))
        rows = [{"name": n, "images": int(c)} for n, c in zip(self.domain_names, counts, strict=True)]
        if self.labeled_domains is None or self.test_domains is None:
            return rows
        d = len(self.domain_names)
        labeled, test = np.bincount(self.labeled_domains, minlength=d), np.bincount(self.test_domains, minlength=d)
        return [
            r | {"classes": len(c), "labeled": int(n), "test": int(t)}
            for r, c, n, t in zip(rows, self.domain_classes, labeled, test, strict=True)
        ]
