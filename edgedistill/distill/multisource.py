"""Teacher targets for multi-source distillation: similarity scores, weights α, target-class pseudo-labels.

Teachers are ranked on the labeled split only (cheap: every teacher runs on ~100 images); the unlabeled
and test splits are cached only for the teachers that get a weight α > 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgedistill.data.images import TaskData
from edgedistill.distill.config import MultiSourceConfig
from edgedistill.errors import ConfigError
from edgedistill.registry import Registry
from edgedistill.teachers.cache import CachedTeacher, ShardedArray, cache_teachers
from edgedistill.teachers.similarity import similarity_scores
from edgedistill.teachers.sources import Teacher, load_teacher


@dataclass
class TeacherTargets:
    """Per active teacher: weight α, unlabeled-pool features (L2-normalised) and target-class logits."""

    sources: list[str]
    alphas: list[float]
    features: list[ShardedArray]
    logits: list[np.ndarray]

    @property
    def dims(self) -> list[int]:
        return [f.shape[1] for f in self.features]

    def batch(
        self, idx: np.ndarray, temperature: float, device: torch.device
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(soft labels softmax(g/T), features) of unlabeled rows `idx`, one tensor per teacher."""
        probs = [torch.softmax(torch.from_numpy(lg[idx]) / temperature, 1).to(device) for lg in self.logits]
        feats = [torch.from_numpy(f[idx]).to(device) for f in self.features]
        return probs, feats


# (teacher, labels of the labeled split, class count, settings, splits) -> (N, classes) logits of each split, in order
PseudoLabelFn = Callable[[CachedTeacher, np.ndarray, int, MultiSourceConfig, Sequence[str]], list[np.ndarray]]
PSEUDO_LABELS: Registry[PseudoLabelFn] = Registry("pseudo-label mapping")
MISSING_CLASS_MARGIN = 30.0  # a class the labeled split lacks sits this far below the lowest fitted logit


def class_axis_logits(scores: np.ndarray, fitted: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) logits from a linear head's `decision_function` over its `fitted` classes (`classes_`).

    scikit-learn returns one column for two classes (the log-odds d of the second): it becomes [-d/2, d/2], whose
    softmax is the head's own probability. Classes the head never saw get a logit far below every other one.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1:
        scores = np.stack([-scores / 2, scores / 2], axis=1)
    if scores.shape[1] != len(fitted):
        raise ValueError(f"head scores have {scores.shape[1]} columns for {len(fitted)} fitted classes")
    floor = (scores.min(initial=0.0) - MISSING_CLASS_MARGIN) if scores.size else -MISSING_CLASS_MARGIN
    out = np.full((len(scores), num_classes), floor, dtype=np.float32)
    out[:, np.asarray(fitted, dtype=np.int64)] = scores
    return out


@PSEUDO_LABELS.register("head")
def _head_logits(
    c: CachedTeacher, labels: np.ndarray, num_classes: int, cfg: MultiSourceConfig, splits: Sequence[str]
) -> list[np.ndarray]:
    """A linear head fit once on the labeled split's features, applied to every split asked for."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=cfg.head_c, max_iter=2000).fit(c.sets["labeled"].features.read(), labels)
    return [
        class_axis_logits(head.decision_function(c.sets[s].features.read()), head.classes_, num_classes) for s in splits
    ]


@PSEUDO_LABELS.register("auto")
def _auto_logits(
    c: CachedTeacher, labels: np.ndarray, num_classes: int, cfg: MultiSourceConfig, splits: Sequence[str]
) -> list[np.ndarray]:
    """The teacher's own logits when it predicts the task's classes (same count), else a fitted head."""
    same = c.num_classes == num_classes
    return (_native_logits if same else _head_logits)(c, labels, num_classes, cfg, splits)


@PSEUDO_LABELS.register("native")
def _native_logits(
    c: CachedTeacher, labels: np.ndarray, num_classes: int, cfg: MultiSourceConfig, splits: Sequence[str]
) -> list[np.ndarray]:
    if c.num_classes != num_classes:
        raise ConfigError(
            f"teacher '{c.source}' predicts {c.num_classes} classes, the task has {num_classes}; "
            "use train.multisource.pseudo_labels: head"
        )
    return [c.sets[s].logits.read() for s in splits]


@dataclass
class TeacherReport:
    """What train.json records per teacher."""

    source: str
    name: str
    score: float
    alpha: float
    cache_hit: bool | None = None  # None: only the labeled split was needed
    test_accuracy: float | None = None  # target-class pseudo-labels on the test split, %


def prepare_teachers(
    sources: list[str],
    data: TaskData,
    cfg: MultiSourceConfig,
    weigh: Callable[[np.ndarray], np.ndarray],
    pseudo_labels: str,
    folder: Path,
    device: torch.device,
    base: Path | None = None,
    show_progress: bool = False,
    loaded: Mapping[str, Teacher] | None = None,
) -> tuple[TeacherTargets, list[TeacherReport]]:
    """Rank the teachers, weigh them with `weigh(scores)`, cache the active ones and map them to target classes.

    Args:
        pseudo_labels: registered mapping of teacher outputs to target-class logits (head | native | auto).
        loaded: teachers already loaded, by source (e.g. by the caller's input check); the others are loaded once.

    Returns:
        The training targets of the teachers with α > 0, and a report row for every teacher.
    """
    labels = data.labeled.labels
    assert labels is not None
    sets = {"labeled": data.labeled}
    teachers = dict(loaded or {}) | {s: load_teacher(s, device, base) for s in sources if s not in (loaded or {})}
    ranked = cache_teachers(sources, sets, folder, device, base, show_progress, loaded=teachers)
    scores = similarity_scores(ranked, labels, cfg.similarity)
    alphas = weigh(np.asarray(scores))
    reports = [TeacherReport(c.source, c.name, s, float(a)) for c, s, a in zip(ranked, scores, alphas, strict=True)]
    active = [i for i, a in enumerate(alphas) if a > 0]
    sets |= {"unlabeled": data.unlabeled, "test": data.test}
    cached = cache_teachers([sources[i] for i in active], sets, folder, device, base, show_progress, loaded=teachers)
    pseudo = PSEUDO_LABELS.get(pseudo_labels)
    logits = []
    for i, c in zip(active, cached, strict=True):
        unlabeled, *test = pseudo(
            c, labels, data.num_classes, cfg, ("unlabeled", "test") if data.test.labels is not None else ("unlabeled",)
        )
        logits.append(unlabeled)
        reports[i].cache_hit = not c.computed
        if test:
            test_pred = test[0].argmax(1)
            reports[i].test_accuracy = round(float((test_pred == data.test.labels).mean() * 100), 2)
    targets = TeacherTargets(
        sources=[c.source for c in cached],
        alphas=[float(alphas[i]) for i in active],
        features=[c.sets["unlabeled"].features for c in cached],
        logits=logits,
    )
    return targets, reports
