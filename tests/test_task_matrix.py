"""Any task users bring: synthetic ImageFolders of 2 to 100 classes, even and 1:10 balance, grey, RGB and
RGBA/palette PNGs of mixed sizes and aspect ratios, through train (2 steps) → export INT8 → bench → report with
every distiller and a scratch and a pretrained student; per-class and balanced accuracy in the manifest and the
report. The folders are drawn in the test: each class is a shape (disc, square, bar, triangle, ...) of a random
colour on a noisy background, so the classes are learnable and teachers see real image structure."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image, ImageDraw
from safetensors.torch import save_file

import edgedistill as ed
from edgedistill.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16  # the students' input: small keeps a case to a few seconds on 2 cores
SHAPES = 8  # shapes drawn; class c is shape c % SHAPES at one of a few scales


def _draw(c: int, rng: np.random.Generator) -> Image.Image:
    w, h = (int(v) for v in rng.integers(12, 48, 2))  # mixed sizes and aspect ratios
    im = Image.fromarray(rng.integers(0, 70, (h, w, 3), dtype=np.uint8))
    d = ImageDraw.Draw(im)
    s = 0.1 + 0.08 * (c // SHAPES % 4)
    box = (w * s, h * s, w * (1 - s), h * (1 - s))
    fill = tuple(int(v) for v in rng.integers(140, 256, 3))
    k = c % SHAPES
    if k == 0:
        d.ellipse(box, fill=fill)
    elif k == 1:
        d.rectangle(box, fill=fill)
    elif k in (2, 3):
        d.line(box if k == 2 else (box[0], box[3], box[2], box[1]), fill=fill, width=max(2, w // 8))
    elif k == 4:
        d.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=fill)
    elif k == 5:
        d.line((box[0], (box[1] + box[3]) / 2, box[2], (box[1] + box[3]) / 2), fill=fill, width=max(2, h // 8))
    else:
        d.ellipse(box, outline=fill, width=max(2, w // 10 + k - 6))
    return im


def make_folder(root: Path, counts: list[int], modes: list[str], seed: int = 0) -> Path:
    """`root/{train,test}/classNNN/*.png`: counts[c] training images of class c, a third of it (≥ 1) as test."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        for split, k in (("train", n), ("test", max(1, n // 3))):
            d = root / split / f"class{c:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                _draw(c, rng).convert(modes[(c + i) % len(modes)]).save(d / f"{i}.png")
    return root


def _timm_weights(folder: Path, model: str, num_classes: int, seed: int) -> Path:
    torch.manual_seed(seed)
    path = folder / f"{model}.safetensors"
    save_file(timm.create_model(model, num_classes=num_classes).state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm's tiny `test_efficientnet` with 'pretrained' weights saved locally (1000-class head: an ImageNet net)."""
    return _timm_weights(tmp_path_factory.mktemp("weights"), "test_efficientnet", 1000, seed=0)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm's tiny `test_resnet` with a 7-class head: a teacher from another task."""
    return _timm_weights(tmp_path_factory.mktemp("teacher"), "test_resnet", 7, seed=1)


def _student(kind: str, weights: Path) -> str:
    if kind == "scratch":
        return "{family: resnet_cifar, width_choices: [0.5, 1.0], options: {base_channels: [8, 16, 16]}}"
    return (
        "{family: timm, width_choices: [0.5, 1.0], divisor: 4, "
        f"options: {{model: test_efficientnet, weights: '{weights}'}}}}"
    )


def _write_case(
    tmp: Path, folder: Path, channels: int, student: str, distiller: str, metric: str, device: str = "arm"
) -> tuple[Path, Path]:
    """task.yaml and budget.yaml; a budget for another `device` family than this machine's skips the search's
    latency measurement (three ONNX exports of shortlisted subnets), which one case keeps (this machine's)."""
    task, budget = tmp / "task.yaml", tmp / "budget.yaml"
    task.write_text(
        "name: matrix\n"
        f"data: {{source: imagefolder, root: {folder}, channels: {channels}, image_size: {SIZE}, labels_per_class: 2, "
        "seed: 0}\n"
        f"teachers:\n  - source: timm:test_resnet?weights={folder.parent / 'teacher.safetensors'}\n"
        "  - source: ccexam:usps?crop=0.72\n"
        f"student: {student}\n"
        f"train: {{distiller: {distiller}, steps: 2, num_sampled: 1, batch_labeled: 8, batch_unlabeled: 8, "
        "warmup_steps: 1, bn_calibration_images: 16, eval_batch: 64, channels_last: false}\n"
    )
    recipe = Path(__file__).resolve().parents[1] / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml"
    budget.write_text(
        f"name: matrix\ndevice: {{family: {device}, accelerator: cpu}}\n"
        f"target: {{runtime: onnxruntime, precision: int8, recipe: {recipe}, threads: 1}}\n"
        f"input: {{height: {SIZE}, width: {SIZE}, channels: {channels}, batch: 1}}\n"
        "limits: {latency_ms: {p90: 1000}, params_m: 10, macs_m: 100}\n"
        f"accuracy: {{max_int8_drop_pts: 100, metric: {metric}}}\n"
    )
    return task, budget


# name: (class counts, PIL modes, student, distiller, guarded metric); the first one also measures the search's
# shortlist as INT8 ONNX Runtime models on this machine (the INT8 agreement UPEM with two classes).
CASES = {
    "2-even-rgb-scratch-weighted": ([9, 9], ["RGB"], "scratch", "distill-weighted", "top1"),
    "2-1to10-grey-pretrained-nearest": ([30, 3], ["L"], "pretrained", "distill-nearest", "balanced"),
    "3-even-rgba-palette-pretrained-weighted": ([6, 6, 6], ["RGBA", "P"], "pretrained", "distill-weighted", "top1"),
    "10-1to10-rgb-scratch-ce": ([30] + [3] * 9, ["RGB"], "scratch", "ce-only", "balanced"),
    "100-even-grey-scratch-nearest": ([3] * 100, ["L", "RGB"], "scratch", "distill-nearest", "top1"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_task_matrix_runs_end_to_end(name: str, tmp_path: Path, teacher: Path, pretrained: Path) -> None:
    counts, modes, student, distiller, metric = CASES[name]
    channels = 1 if modes == ["L"] or modes == ["L", "RGB"] else 3
    folder = make_folder(tmp_path / "data" / "photos", counts, modes)
    (folder.parent / "teacher.safetensors").write_bytes(teacher.read_bytes())
    here, other = ("x86", "arm") if platform.machine().lower() in ("x86_64", "amd64") else ("arm", "x86")
    device = here if name == next(iter(CASES)) else other
    task, budget = _write_case(tmp_path, folder, channels, _student(student, pretrained), distiller, metric, device)
    run = tmp_path / "run"
    trained = ed.train(budget, task, run, device="cpu")
    assert trained.chosen.config
    pool = sum(counts) - 2 * len(counts)
    exported = ed.export(run, precision="int8", calibration_samples=pool, allow_small_calibration=True)
    acc = json.loads((run / "export" / "onnxruntime-int8" / "manifest.json").read_text())["accuracy"]
    n_test = sum(max(1, n // 3) for n in counts)
    assert acc["n"] == n_test and acc["metric"] == metric and len(acc["per_class"]) == len(counts)
    assert [c["n"] for c in acc["per_class"]] == [max(1, n // 3) for n in counts]
    assert acc["fp32_balanced"] == pytest.approx(np.mean([c["fp32"] for c in acc["per_class"]]))
    assert acc["balanced"] == pytest.approx(np.mean([c["artifact"] for c in acc["per_class"]]))
    want = acc["fp32"] - acc["artifact"] if metric == "top1" else acc["fp32_balanced"] - acc["balanced"]
    assert acc["drop_pts"] == pytest.approx(want) and exported.artifacts
    ed.bench(run, runs=10, min_time=0.01, warmup=1, reference=False)
    md = Path(ed.report(run).markdown).read_text()
    assert "## Per-class accuracy: `onnxruntime-int8`" in md and "## Exports" in md
    assert f"| `class{len(counts) - 1:03d}` |" in md or len(counts) > 20  # the report shows the 20 lowest


def test_a_class_with_too_few_images_names_the_field(tmp_path: Path, teacher: Path, pretrained: Path) -> None:
    folder = make_folder(tmp_path / "data" / "photos", [6, 1], ["RGB"])
    (folder.parent / "teacher.safetensors").write_bytes(teacher.read_bytes())
    task, budget = _write_case(tmp_path, folder, 3, _student("scratch", pretrained), "ce-only", "top1")
    with pytest.raises(DataError, match=r"labels_per_class: class 1 has 1 images, fewer than labels_per_class=2"):
        ed.train(budget, task, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_two_class_folder_with_an_extra_domain_trains_with_udon(
    tmp_path: Path, teacher: Path, pretrained: Path
) -> None:
    """UDON where it applies: a two-class, 1:10 folder plus an unlabeled folder from another domain (inverted
    colours), through train → export → report, with the domain sampler's probabilities in train.json."""
    folder = make_folder(tmp_path / "data" / "photos", [20, 2 + 2], ["RGB"])
    other = tmp_path / "data" / "other-domain"
    other.mkdir()
    rng = np.random.default_rng(5)
    for i in range(12):
        Image.eval(_draw(i % 2, rng), lambda v: 255 - v).save(other / f"{i}.png")
    (folder.parent / "teacher.safetensors").write_bytes(teacher.read_bytes())
    task, budget = _write_case(tmp_path, folder, 3, _student("scratch", pretrained), "udon", "balanced")
    spec = yaml.safe_load(task.read_text())
    spec["data"]["extra_unlabeled"] = [{"source": "imagefolder", "root": str(other), "name": "inverted"}]
    task.write_text(yaml.safe_dump(spec))
    run = tmp_path / "run"
    ed.train(budget, task, run, device="cpu")
    train = json.loads((run / "train.json").read_text())
    assert train["distiller"] == "udon" and [d["name"] for d in train["data"]["domains"]] == ["photos", "inverted"]
    assert sum(train["domain_sampling"]["probabilities"].values()) == pytest.approx(1.0)
    ed.export(run, precision="int8", calibration_samples=20 - 2 + 2, allow_small_calibration=True)
    acc = json.loads((run / "export" / "onnxruntime-int8" / "manifest.json").read_text())["accuracy"]
    assert acc["metric"] == "balanced" and [c["n"] for c in acc["per_class"]] == [6, 1]
    assert "## Per-class accuracy" in Path(ed.report(run).markdown).read_text()
