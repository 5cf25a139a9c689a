"""Labeled domains (`data.domains`): several target datasets merged into one universal task (UDON, docs/method.md).

The task's own target (`data.source`) is domain 0 and entry i of `data.domains` is domain i + 1. Each domain keeps
its own classes, few-label split, unlabeled pool and test split; its images are converted to the target's
(C, H, W) uint8 format as `data.extra_unlabeled` does (`to_frame`). The merged task's labels index the universal
class list: every domain's classes in turn (`per-domain`, named `<domain>/<class>`), or the union of the class
names (`shared`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedistill.data.config import DataConfig, LabeledDomainConfig
from edgedistill.data.domains import Frame, to_frame
from edgedistill.data.images import ImageSet, TaskData
from edgedistill.errors import ConfigError, EdgedistillError, RegistryError

Loader = Callable[[DataConfig, Path], TaskData]


def add_labeled_domains(data: TaskData, cfg: DataConfig, base_dir: Path, loader: Callable[[str], Loader]) -> TaskData:
    """`data` (domain 0) merged with the domains of `cfg.domains`, loaded with `loader(source)`; unchanged without.

    Raises:
        ConfigError: naming the entry's field: unknown source, the target's own data again, a missing root, a box
            larger than the frame, a duplicate name; a domain's data errors are worded with its field path.
    """
    if not cfg.domains:
        return data
    c, h, w = (int(s) for s in data.labeled.images.shape[1:])
    parts, names = [data], [data.name]
    for i, d in enumerate(cfg.domains):
        field = f"data.domains[{i}]"
        load = _check_entry(d, cfg, (c, h, w), field, loader)
        name = d.name or d.source
        if name in names:
            raise ConfigError(f"{field}.name: '{name}' is already domain {names.index(name)}'s name; set another")
        sub = DataConfig(
            source=d.source,
            root=d.root,
            channels=c,
            image_size=d.image_size,
            labels_per_class=d.labels_per_class,
            unlabeled=d.unlabeled,
            test=d.test,
            seed=cfg.seed,
            on_corrupt=d.on_corrupt,
        )
        try:
            part = load(sub, base_dir)
        except EdgedistillError as e:  # the loader words its errors for `data.`: name this entry instead
            message = str(e).replace("data.", f"{field}.")
            raise type(e)(message if field in message else f"{field}: {message}") from None
        parts.append(_in_frame(part, (c, h, w), d))
        names.append(name)
    return _merge(data, parts, names, cfg.label_space)


def _check_entry(
    d: LabeledDomainConfig, cfg: DataConfig, frame: Frame, field: str, loader: Callable[[str], Loader]
) -> Loader:
    try:
        load = loader(d.source)
    except RegistryError as e:
        raise ConfigError(f"{field}.source: {e}") from None
    if d.source == cfg.source and d.source != "imagefolder":
        raise ConfigError(f"{field}.source: '{d.source}' is the target's own data (it is domain 0)")
    if d.source == "imagefolder" and not d.root:
        raise ConfigError(f"{field}.root: required for source 'imagefolder' (train/<class>/, test/<class>/)")
    if d.box is not None and d.box > min(frame[1:]):
        raise ConfigError(f"{field}.box: {d.box} is larger than the target's {frame[2]}x{frame[1]} images")
    return load


def _in_frame(part: TaskData, frame: Frame, d: LabeledDomainConfig) -> TaskData:
    """Every image set of `part` converted to the target's frame (`to_frame`)."""

    def convert(s: ImageSet) -> ImageSet:
        return ImageSet(to_frame(s.images, frame, d.box, d.invert), s.labels)

    return replace(part, labeled=convert(part.labeled), unlabeled=convert(part.unlabeled), test=convert(part.test))


def _merge(target: TaskData, parts: list[TaskData], names: list[str], label_space: str) -> TaskData:
    classes: list[str] = []
    domain_classes: list[list[int]] = []
    for name, part in zip(names, parts, strict=True):
        if label_space == "shared":
            classes += [c for c in part.class_names if c not in classes]
            domain_classes.append([classes.index(c) for c in part.class_names])
        else:
            domain_classes.append(list(range(len(classes), len(classes) + part.num_classes)))
            classes += [f"{name}/{c}" for c in part.class_names]

    def merged(sets: list[ImageSet]) -> tuple[ImageSet, np.ndarray]:
        labels = None
        if all(s.labels is not None for s in sets):
            labels = np.concatenate([np.asarray(m)[s.labels] for m, s in zip(domain_classes, sets, strict=True)])
        index = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
        return ImageSet(np.concatenate([s.images for s in sets]), labels), index

    labeled, labeled_domains = merged([p.labeled for p in parts])
    unlabeled, domains = merged([p.unlabeled for p in parts])
    test, test_domains = merged([p.test for p in parts])
    return replace(
        target,
        class_names=classes,
        labeled=labeled,
        unlabeled=unlabeled,
        test=test,
        skipped=[s for p in parts for s in p.skipped],
        domains=domains,
        domain_names=names,
        labeled_domains=labeled_domains,
        test_domains=test_domains,
        domain_classes=domain_classes,
        target_domains=len(parts),
    )


def single_domain(data: TaskData, d: int) -> TaskData:
    """Domain `d` of a universal task alone, with its own class list and labels (a specialist's task)."""
    if not data.universal:
        raise ValueError("single_domain needs a task with labeled domains (data.domains)")
    assert data.labeled_domains is not None and data.test_domains is not None and data.domains is not None
    own = np.asarray(data.domain_classes[d])
    local = np.full(data.num_classes, -1)
    local[own] = np.arange(len(own))

    def keep(s: ImageSet, index: np.ndarray) -> ImageSet:
        rows = np.flatnonzero(index == d)
        return ImageSet(s.images[rows], None if s.labels is None else local[s.labels[rows]])

    return TaskData(
        name=data.domain_names[d],
        class_names=[data.class_names[i].removeprefix(f"{data.domain_names[d]}/") for i in own],
        labeled=keep(data.labeled, data.labeled_domains),
        unlabeled=keep(data.unlabeled, data.domains),
        test=keep(data.test, data.test_domains),
        mean=data.mean,
        std=data.std,
        notes=dict(data.notes),
    )
