"""Universal student over labeled domains (UDON): merged data, online domain teachers, sampling, evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_runs import TINY_STUDENT, TINY_TRAIN

from edgedistill.cli import main
from edgedistill.data import DataConfig, ImageSet, Preprocess, TaskData, build_task_data
from edgedistill.data.labeled import single_domain
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distillers import DISTILLERS, StepBatch
from edgedistill.distill.domains import domain_setup, draw_rows
from edgedistill.distill.evaluate import retrieval_metrics, universal_metrics
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.step import step_loss
from edgedistill.distill.trainer import distill
from edgedistill.models import build_bank

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
CLASSES = [[0, 1, 2], [3, 4]]  # two domains with their own classes


def _synthetic(seed: int = 0) -> TaskData:
    """Two labeled 8x8 domains: domain 0 with classes 0-2 (dark images), domain 1 with classes 3-4 (bright)."""
    rng = np.random.default_rng(seed)

    def images(n: int, d: int) -> np.ndarray:
        return rng.integers(0, 128, (n, 1, 8, 8), dtype=np.uint8) + np.uint8(127 * d)

    def split(n0: int, n1: int, labels: bool) -> tuple[ImageSet, np.ndarray]:
        x = np.concatenate([images(n0, 0), images(n1, 1)])
        y = np.concatenate([np.arange(n0) % 3, 3 + np.arange(n1) % 2]) if labels else None
        return ImageSet(x, y), np.repeat([0, 1], [n0, n1])

    (labeled, ld), (unlabeled, ud), (test, td) = split(6, 4, True), split(12, 8, False), split(9, 6, True)
    return TaskData(
        name="a",
        class_names=["a/0", "a/1", "a/2", "b/0", "b/1"],
        labeled=labeled,
        unlabeled=unlabeled,
        test=test,
        mean=(0.5,),
        std=(0.5,),
        domains=ud,
        domain_names=["a", "b"],
        labeled_domains=ld,
        test_domains=td,
        domain_classes=CLASSES,
        target_domains=2,
    )


def _tiny_bank(num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_bank("resnet_cifar", num_classes, 1, width_choices=(0.5, 1.0), base_channels=(8, 16, 16))


def test_labeled_domains_merge_in_the_target_frame_with_their_own_classes() -> None:
    mnist = {"source": "mnist", "labels_per_class": 2, "unlabeled": 50, "test": 40, "seed": 0}
    domains = [{"source": "optdigits", "box": 20, "unlabeled": 30, "test": 20}, {"source": "ising", "test": 10}]
    d = build_task_data(DataConfig(**mnist, domains=domains))
    assert d.universal and d.domain_names == ["mnist", "optdigits", "ising"]
    assert d.labeled.images.shape == (140, 1, 28, 28) and d.test.images.shape == (70, 1, 28, 28)  # 2, 10, 10 per class
    assert d.class_names[:2] == ["mnist/0", "mnist/1"] and d.class_names[-2:] == ["ising/below_tc", "ising/above_tc"]
    assert d.domain_classes == [list(range(10)), list(range(10, 20)), [20, 21]]
    assert d.summary()["domains"][2] == {"name": "ising", "images": 3980, "classes": 2, "labeled": 20, "test": 10}
    for index, images in ((d.labeled_domains, d.labeled), (d.test_domains, d.test)):
        assert index is not None and images.labels is not None
        for dom, classes in enumerate(d.domain_classes):  # every label lies in its own domain's classes
            assert set(images.labels[index == dom]) <= set(classes)
    assert len(d.target_unlabeled) == len(d.unlabeled) == 50 + 30 + 3980  # every domain calibrates
    plain = build_task_data(DataConfig(**mnist))
    assert not plain.universal and np.array_equal(d.test.images[d.test_domains == 0], plain.test.images)
    opt = single_domain(d, 1)  # a specialist's view: own classes, local labels
    assert opt.class_names == [str(i) for i in range(10)] and opt.labeled.labels is not None
    assert len(opt.test) == 20 and set(opt.labeled.labels) == set(range(10)) and len(opt.unlabeled) == 30
    shared = build_task_data(DataConfig(**mnist, domains=domains[:1], label_space="shared"))
    assert shared.class_names == [str(i) for i in range(10)] and shared.domain_classes == [list(range(10))] * 2


def test_imagefolder_domain_in_the_target_frame(tmp_path: Path) -> None:
    from PIL import Image

    for split, n in (("train", 4), ("test", 2)):  # an RGB ImageFolder of 12x12 images, 2 classes
        for label in ("bolt", "nut"):
            (tmp_path / "parts" / split / label).mkdir(parents=True)
            for i in range(n):
                pixels = np.full((12, 12, 3), 40 * i + (100 if label == "nut" else 0), np.uint8)
                Image.fromarray(pixels).save(tmp_path / "parts" / split / label / f"{i}.png")
    target = {"source": "optdigits", "labels_per_class": 2, "unlabeled": 20, "test": 10}
    entry = {"source": "imagefolder", "root": "parts", "name": "parts", "labels_per_class": 1, "box": 6}
    d = build_task_data(DataConfig(**target, domains=[entry]), tmp_path)
    assert d.domain_names == ["optdigits", "parts"] and d.class_names[-2:] == ["parts/bolt", "parts/nut"]
    assert d.labeled.images.shape[1:] == (1, 8, 8) and d.summary()["domains"][1]["test"] == 4
    parts = d.test.images[d.test_domains == 1]  # RGB → grey, each image's level kept
    assert sorted(np.unique(parts).tolist()) == [0, 40, 100, 140]


def test_retrieval_metrics_on_a_hand_checked_example() -> None:
    # unit vectors at these angles; q4 (60°) has two B images nearer than its A neighbours; q5 is alone in class C
    angles = torch.tensor([0.0, 10.0, 90.0, 80.0, 60.0, 200.0]).deg2rad()
    e = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor([[1.0], [2.0], [1.0], [3.0], [1.0], [1.0]])
    labels = np.array([0, 0, 1, 1, 0, 2])
    # top-3 relevance: q0..q3 [1,1,0]/[1,0,0] → AP 1; q4 [0,0,1] of 2 relevant → (1/3)/2; q5 none → 0
    expected = {"recall_at_1": 4 / 6 * 100, "map_at_3": (4 + 1 / 6) / 6 * 100}
    for chunk in (1024, 4):  # chunks of queries give the same numbers
        got = retrieval_metrics(e, labels, k=3, chunk=chunk)
        assert got.keys() == expected.keys()
        assert all(math.isclose(got[key], value, rel_tol=1e-5) for key, value in expected.items())
    assert retrieval_metrics(e[:5], labels[:5], k=1) == pytest.approx({"recall_at_1": 80.0, "map_at_1": 80.0})
    with pytest.raises(ValueError, match="at least 2"):
        retrieval_metrics(e[:1], labels[:1], k=5)


def test_online_teachers_shapes_and_gradients_reach_the_backbone() -> None:
    bank = _tiny_bank()
    cfg = TrainConfig(distiller="udon-online")
    distiller = DISTILLERS.get("udon-online")(cfg, None, bank.feature_dim(bank.largest_config()), CLASSES)
    x, labels = torch.randn(6, 1, 8, 8), torch.tensor([1, 3])  # 2 labeled + 4 unlabeled images
    domains = torch.tensor([0, 1, 0, 1, 1, 1])  # every row goes to its own domain's teacher
    feats = bank.forward_features(x)
    online = distiller.online_targets(feats, labels, domains)
    assert [g.rows.tolist() for g in online.groups] == [[0, 2], [1, 3, 4, 5]]
    one = online.groups[1]
    assert one.classes.tolist() == [3, 4] and one.probs.shape == (4, 2) and not one.probs.requires_grad
    assert one.embeddings.shape == (4, cfg.udon.teacher_dim) and torch.allclose(
        one.embeddings.norm(dim=1), torch.ones(4)
    )

    def grads(loss: torch.Tensor) -> dict[str, bool]:
        bank.zero_grad(set_to_none=True)
        distiller.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        heads = distiller.domain_teachers.heads
        return {
            "backbone": bank.stem[0].weight.grad is not None and bool(bank.stem[0].weight.grad.abs().sum() > 0),
            "universal head": bank.classifier.weight.grad is not None,
            "teachers": all(h.projection.weight.grad is not None for h in heads),
        }

    assert grads(online.terms["teacher_ce"]) == {"backbone": True, "universal head": False, "teachers": True}
    logits = bank.forward_head(feats)
    b = StepBatch(logits[:2], labels, logits[2:], features=feats, online=online, domains=domains)
    own = distiller.own_classes(logits[:2], domains)  # each labeled row's CE is over its own domain's classes
    assert bool(own[0, 3:].isinf().all() and own[1, :3].isinf().all() and own[0, :3].isfinite().all())
    terms = distiller.terms(1, b)  # a smaller width: CE, KD and relational, no teacher CE
    assert set(terms) == {"ce", "kd", "relational"} and set(distiller.terms(0, b)) == {*terms, "teacher_ce"}
    for name in ("kd", "relational"):  # the student's distillation terms train the backbone, never the teachers
        assert grads(terms[name]) == {"backbone": True, "universal head": name == "kd", "teachers": False}
    rows = distiller.row_losses(b)  # what the sampler averages per domain: each row's KL to its teacher
    assert rows.shape == (6,) and bool((rows >= 0).all())
    rng = np.random.default_rng(0)  # two frozen external teachers on top (multi-source): the udon terms, renamed
    feats_ext = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(2)]
    external = TeacherTargets(["a", "b"], [0.5, 0.5], feats_ext, [rng.standard_normal((4, 5)).astype(np.float32)] * 2)
    both = DISTILLERS.get("udon-online")(cfg, external, bank.feature_dim(bank.largest_config()), CLASSES)
    t_probs, t_feats = external.batch(np.arange(4), both.temperature, torch.device("cpu"))
    with_ext = StepBatch(
        logits[:2], labels, logits[2:], None, feats[2:], t_probs, t_feats, None, feats, online, domains
    )
    assert set(both.terms(0, with_ext)) == {"ce", "kd", "relational", "teacher_ce", "kd_ext", "relational_ext"}
    branch = DISTILLERS.get("udon-online")(TrainConfig(udon={"teacher": "branch", "teacher_dim": 8}), None, 16, CLASSES)
    assert branch.online_targets(feats, labels, domains).groups[0].embeddings.shape == (2, 8)
    with pytest.raises(ValueError, match="domain 0 has a class of another domain"):
        distiller.online_targets(feats, torch.tensor([3, 3]), domains)

    def forward(t: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = bank.forward_features(t)
        return f, bank.forward_heads(f)

    configs = [bank.largest_config(), bank.smallest_config()]
    amp = (torch.device("cpu"), None)
    total, logs = step_loss(bank, forward, distiller, None, configs, x, labels, 4, None, None, amp, domains)
    assert total.ndim == 0 and {"ce", "kd", "relational", "teacher_ce", "kd_sub", "relational_sub"} <= set(logs)
    assert math.isclose(logs["loss_domain0"], float(rows[[0, 2]].mean()), rel_tol=1e-4) and "loss_domain1" in logs


@pytest.mark.parametrize("batches", ["mixed", "domain"])
def test_sampler_draws_rows_by_domain_and_follows_their_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: str
) -> None:
    data = _synthetic()
    sampler, pools, labeled = domain_setup(TrainConfig().udon, data, None, draws_unlabeled=False)
    assert sampler is not None and [len(p) for p in pools] == [12, 8] and [len(p) for p in labeled] == [6, 4]
    for _ in range(3):  # domain 1 trails (higher loss): it is drawn more, the floor keeps domain 0 alive
        sampler.update(0, 0.5)
        sampler.update(1, 1.5)
    assert np.allclose(sampler.probabilities(), [0.9 * 0.5 / 2.0 + 0.05, 0.9 * 1.5 / 2.0 + 0.05])
    gen = torch.Generator().manual_seed(0)
    index, domains = draw_rows(gen, np.array([0.25, 0.75]), labeled, 400)
    assert 0.65 < float(domains.float().mean()) < 0.85 and bool((data.labeled_domains[index] == domains.numpy()).all())
    seen: list[tuple[list[int], list[int]]] = []
    import edgedistill.distill.loop as loop

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((args[-1].tolist(), args[6].tolist()))  # type: ignore[attr-defined]
        return step_loss(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "step_loss", spy)
    udon = {"batches": batches}
    cfg = TrainConfig(distiller="udon-online", steps=12, batch_labeled=4, batch_unlabeled=4, warmup_steps=1, udon=udon)
    cfg = cfg.model_copy(update={"num_sampled": 2, "checkpoint_every": 50, "bn_calibration_images": 8})
    bank = _tiny_bank()
    pre = Preprocess(8, 8, 1, data.mean, data.std)
    state = distill(bank, data, pre, cfg, tmp_path, torch.device("cpu"), show_progress=False)
    assert len(seen) == 12 and all(len(rows) == 8 for rows, _ in seen)
    for rows, labels in seen:  # every labeled row carries a class of its own domain
        assert all(y in CLASSES[d] for d, y in zip(rows, labels, strict=False))
    one_domain = [len(set(rows)) == 1 for rows, _ in seen]
    assert all(one_domain) if batches == "domain" else not all(one_domain)
    row = state.history[-1]
    assert math.isclose(row["p_domain0"] + row["p_domain1"], 1.0, rel_tol=1e-6) and "teacher_ce" in row
    assert "loss_domain0" in row and "loss_domain1" in row  # each domain's rows' KL to its teacher
    assert state.domain_probabilities is not None and min(state.domain_probabilities) >= 0.05 - 1e-9
    scores = universal_metrics(bank, data, pre, torch.device("cpu"), k=2, batch=8)
    assert list(scores) == ["a", "b"] and set(scores["b"]) == {"top1", "recall_at_1", "map_at_2"}
    ce_cfg = cfg.model_copy(update={"distiller": "ce-only"})
    ce = distill(_tiny_bank(), data, pre, ce_cfg, tmp_path / "ce", torch.device("cpu"), show_progress=False)
    assert "p_domain1" in ce.history[-1] and "loss_domain0" in ce.history[0]  # labels alone: their CE per domain


def _universal_task(tmp: Path) -> tuple[Path, Path]:
    """tasks/universal-digits.yaml with tiny subsamples, a tiny student and a few steps; an unmeasured budget."""
    task = yaml.safe_load((REPO / "tasks" / "universal-digits.yaml").read_text())
    task["data"] |= {"unlabeled": 200, "test": 100}
    task["data"]["domains"][0] |= {"unlabeled": 200, "test": 60}
    task["data"]["domains"][1] |= {"unlabeled": 200, "test": 40}
    task["student"] = dict(TINY_STUDENT)
    task["train"] |= TINY_TRAIN
    path = tmp / "universal.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text()
    budget = tmp / "arm.yaml"
    text = text.replace("max_int8_drop_pts: 1.0", "max_int8_drop_pts: 100.0")  # a 6-step net: any drop is noise
    budget.write_text(text.replace("family: x86", "family: arm"))  # ranked by MACs: no timed exports in the search
    return path, budget


def test_universal_task_from_the_cli_api_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped universal task (MNIST + optdigits + Ising), a few steps on real data: train.json, CLI, report."""
    import edgedistill as ed

    task, budget = _universal_task(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--task", str(task), "--budget", str(budget), "--out", str(out), "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--no-progress"])
    assert e.value.code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "universal evaluation" in printed and "ising" in printed and "recall@1" in printed
    s = json.loads((out / "train.json").read_text())
    assert s["distiller"] == "udon-online" and [d["name"] for d in s["data"]["domains"]] == [
        "mnist",
        "optdigits",
        "ising",
    ]
    assert set(s["universal"]) == {"map_k", "largest", "subnet"} and list(s["universal"]["subnet"]) == [
        "mnist",
        "optdigits",
        "ising",
    ]
    over = s["domain_sampling"]["over_time"]
    assert over["step"] == [6] and set(over) == {"step", "mnist", "optdigits", "ising"}
    r = ed.TrainResult.from_dict(s)
    assert list(r.universal) == ["mnist", "optdigits", "ising"] and 0 <= r.universal["ising"].recall_at_1 <= 100
    assert math.isclose(sum(r.domain_probabilities.values()), 1.0)
    report = ed.report(out)
    text = Path(report.markdown).read_text()
    assert "## Universal evaluation" in text and "## Domain sampling" in text and "| chosen subnet | ising |" in text
    exported = ed.export(out, sensitivity_images=0)  # one INT8 network: the universal head over the 22 classes
    int8 = exported.manifests[-1]
    assert int8.precision == "int8" and len(int8.class_names) == 22 and int8.class_names[-1] == "ising/above_tc"
    assert int8.sensitivity is None  # the budget is precision auto: its INT8 candidate takes the export's options


def test_cosine_head_normalises_as_f_normalize() -> None:
    from edgedistill.models.slimmable import unit_rows

    x = torch.randn(4, 7) * torch.tensor([[1e-3], [1.0], [50.0], [0.0]])
    assert torch.allclose(unit_rows(x), torch.nn.functional.normalize(x, dim=-1), atol=1e-6)
