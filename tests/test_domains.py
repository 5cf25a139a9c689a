"""Extra unlabeled domains (`data.extra_unlabeled`): merged pool in the target's format, and UDON from a task file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny_runs import TINY_STUDENT, TINY_TRAIN

from edgedistill.cli import main
from edgedistill.data import DataConfig, build_task_data
from edgedistill.data.domains import to_frame
from edgedistill.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
MNIST = {"source": "mnist", "labels_per_class": 10, "unlabeled": 300, "test": 50, "seed": 0}


def test_to_frame_places_resizes_inverts_and_adapts_channels() -> None:
    digit = np.zeros((1, 1, 4, 4), np.uint8)
    digit[0, 0, 1:3, 1:3] = 255
    out = to_frame(digit, (1, 8, 8), box=4)
    assert out.shape == (1, 1, 8, 8) and out.dtype == np.uint8
    assert np.array_equal(out[0, 0, 2:6, 2:6], digit[0, 0]) and out.sum() == 4 * 255  # centred, margin = border 0
    inverted = to_frame(digit, (1, 8, 8), box=4, invert=True)
    assert np.array_equal(inverted[0, 0, 2:6, 2:6], 255 - digit[0, 0]) and (inverted[0, 0, 0] == 255).all()
    rgb = np.full((2, 3, 6, 6), 90, np.uint8)
    rgb[:, 1] = 180  # grey = mean of the channels, as the model input does it
    assert np.array_equal(to_frame(rgb, (1, 3, 3)), np.full((2, 1, 3, 3), 120, np.uint8))
    assert to_frame(np.full((1, 1, 2, 2), 7, np.uint8), (3, 5, 5)).tolist() == np.full((1, 3, 5, 5), 7).tolist()


def test_extra_domains_merge_into_one_pool_in_the_target_format() -> None:
    extra = [{"source": "optdigits", "images": 200, "box": 20}, {"source": "usps-samples", "name": "usps", "box": 20}]
    d = build_task_data(DataConfig(**MNIST, extra_unlabeled=extra))
    plain = build_task_data(DataConfig(**MNIST))
    assert plain.domains is None and "domains" not in plain.summary()  # no extra domains: nothing changes
    assert d.unlabeled.images.shape == (504, 1, 28, 28) and d.unlabeled.images.dtype == np.uint8
    assert d.domains is not None and np.bincount(d.domains).tolist() == [300, 200, 4]
    assert d.summary()["domains"] == [
        {"name": "mnist", "images": 300},
        {"name": "optdigits", "images": 200},
        {"name": "usps", "images": 4},
    ]
    # domain 0 is the target's own pool, unchanged; calibration draws from it only
    assert d.target_unlabeled.fingerprint() == plain.unlabeled.fingerprint()
    assert d.calibration(300, seed=1).fingerprint() == plain.calibration(300, seed=1).fingerprint()
    with pytest.raises(DataError, match="target's unlabeled pool has 300"):
        d.calibration(301)
    # optdigits 8x8 in a 20x20 box: MNIST's white-on-black digits with a 4-pixel black margin
    opt = d.unlabeled.images[d.domains == 1]
    assert opt[:, :, :4].max() == 0 and opt[:, :, -4:].max() == 0 and opt[:, :, :, :4].max() == 0
    assert opt[:, :, 4:24, 4:24].max() == 255 and 20 < opt.mean() < 80  # MNIST's pool mean is ~33
    with pytest.raises(DataError, match="a name per domain"):
        replace(d, domain_names=["mnist"])
    again = build_task_data(DataConfig(**MNIST, extra_unlabeled=extra))
    assert again.unlabeled.fingerprint() == d.unlabeled.fingerprint()  # seeded
    teacher_cache_key = build_task_data(DataConfig(**MNIST, extra_unlabeled=[])).unlabeled.fingerprint()
    assert teacher_cache_key == plain.unlabeled.fingerprint()


def _pngs(folder: Path) -> None:
    """Three RGB PNGs of different sizes at different depths, and one broken file."""
    rng = np.random.default_rng(0)
    for rel, (h, w) in {"a.png": (10, 10), "sub/b.png": (40, 30), "sub/deeper/c.jpg": (28, 28)}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / rel)
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG not really")


def test_imagefolder_domain_reads_any_depth_and_size(tmp_path: Path) -> None:
    _pngs(tmp_path / "photos")
    entry = {"source": "imagefolder", "root": "photos", "on_corrupt": "skip"}
    d = build_task_data(DataConfig(**MNIST, extra_unlabeled=[entry]), tmp_path)
    assert d.domain_names == ["mnist", "imagefolder:photos"] and d.unlabeled.images.shape == (303, 1, 28, 28)
    assert len(d.skipped) == 1 and "broken.png" in d.skipped[0]
    with pytest.raises(DataError, match=r"broken\.png: cannot read image.*data\.extra_unlabeled\[0\]\.on_corrupt"):
        build_task_data(DataConfig(**MNIST, extra_unlabeled=[entry | {"on_corrupt": "error"}]), tmp_path)


def test_run_copy_of_the_task_gets_absolute_domain_roots(tmp_path: Path) -> None:
    from edgedistill.pipeline.train import _absolute_root
    from edgedistill.task import TaskConfig

    extra = [{"source": "imagefolder", "root": "photos"}, {"source": "optdigits"}]
    cfg = TaskConfig(name="t", data=DataConfig(**MNIST, extra_unlabeled=extra))
    fixed, _ = _absolute_root(cfg, tmp_path)
    assert [d.root for d in fixed.data.extra_unlabeled] == [str((tmp_path / "photos").resolve()), None]
    assert fixed.data.root is None and _absolute_root(fixed, REPO)[0] == fixed


def test_imagefolder_domain_must_not_overlap_the_target_folder(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "ds" / split / label).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "ds" / split / label / f"{i}.png")
    target = {"source": "imagefolder", "root": "ds", "channels": 1, "labels_per_class": 1}
    for root in ("ds", "ds/test", "ds/test/a", "ds/train"):
        with pytest.raises(ConfigError, match=r"data\.extra_unlabeled\[0\]\.root: .* overlaps the target's"):
            build_task_data(DataConfig(**target, extra_unlabeled=[{"source": "imagefolder", "root": root}]), tmp_path)


def _multidomain_task(tmp: Path) -> Path:
    """tasks/mnist-multidomain.yaml with tiny subsamples, a tiny student and a few steps."""
    task = yaml.safe_load((REPO / "tasks" / "mnist-multidomain.yaml").read_text())
    task["data"] |= {"unlabeled": 300, "test": 200}
    task["data"]["extra_unlabeled"][0]["images"] = 200
    task["student"] = dict(TINY_STUDENT)
    task["train"] |= TINY_TRAIN
    path = tmp / "mnist-multidomain.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def _unmeasured_budget(tmp: Path) -> Path:
    """The demo budget on an ARM device: the search ranks by MACs without timing exports here (cheaper)."""
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text()
    assert "family: x86" in text
    path = tmp / "arm.yaml"
    path.write_text(text.replace("family: x86", "family: arm"))
    return path


def test_multidomain_task_trains_from_the_cli_with_the_udon_sampler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped multi-domain task (MNIST + optdigits + USPS), trained a few steps on real data from the CLI."""
    out = tmp_path / "run"
    task, budget = _multidomain_task(tmp_path), _unmeasured_budget(tmp_path)
    args = ["train", "--task", str(task), "--budget", str(budget), "--out", str(out), "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--no-progress"])
    assert e.value.code == 0, capsys.readouterr().err
    s = json.loads((out / "train.json").read_text())
    assert s["distiller"] == "udon" and s["steps"] == 6
    assert s["data"]["domains"] == [
        {"name": "mnist", "images": 300},
        {"name": "optdigits", "images": 200},
        {"name": "usps", "images": 4},
    ]
    sampling = s["domain_sampling"]
    probs = sampling["probabilities"]
    assert sampling["sampler"] == "udon" and list(probs) == ["mnist", "optdigits", "usps"]
    assert np.isclose(sum(probs.values()), 1.0) and min(probs.values()) >= sampling["floor"] / 3 - 1e-9
    assert len(set(probs.values())) > 1  # the losses moved them off uniform
    assert {"p_domain0", "p_domain1", "p_domain2", "kd", "relational"} <= set(s["history"][-1])
    assert s["data"]["unlabeled"] == 504
    run_task = yaml.safe_load((out / "task.yaml").read_text())
    assert [d["source"] for d in run_task["data"]["extra_unlabeled"]] == ["optdigits", "usps-samples"]
