"""Crash safety: an interrupted run resumed from its checkpoints reaches bitwise the same weights on CPU.

The fast test interrupts `distill` in-process right after a checkpoint; the slow tests SIGKILL a training
subprocess at random points several times, and run the same training on 2 gloo processes under torchrun.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.data.images import ImageSet, TaskData
from edgedistill.data.preprocess import Preprocess
from edgedistill.distill import trainer
from edgedistill.distill.checkpoint import list_checkpoints
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distributed import Dist
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.errors import ConfigError
from edgedistill.io import sidecar_path
from edgedistill.models import build_bank
from edgedistill.teachers.cache import ShardedArray

REPO = Path(__file__).resolve().parents[1]


def _task(rng: np.random.Generator) -> TaskData:
    def images(n: int) -> np.ndarray:
        return rng.integers(0, 255, (n, 1, 8, 8), dtype=np.uint8)

    labeled = ImageSet(images(20), np.repeat(np.arange(4), 5))
    test = ImageSet(images(8), np.arange(8) % 4)
    return TaskData("synthetic", list("abcd"), labeled, ImageSet(images(64)), test, (0.5,), (0.5,))


def _teachers(tmp: Path, rng: np.random.Generator) -> TeacherTargets:
    """Two cached teachers on the 64-image pool: memory-mapped features, target-class logits."""
    feats = []
    for i, dim in enumerate((6, 5)):
        np.save(tmp / f"f{i}.npy", rng.standard_normal((64, dim)).astype(np.float32))
        feats.append(ShardedArray([tmp / f"f{i}.npy"]))
    logits = [rng.standard_normal((64, 4)).astype(np.float32) for _ in range(2)]
    return TeacherTargets(["t0", "t1"], [0.6, 0.4], feats, logits)


CFG = TrainConfig(
    distiller="distill-weighted",
    steps=9,
    checkpoint_every=3,
    keep_checkpoints=2,
    batch_labeled=8,
    batch_unlabeled=8,
    warmup_steps=2,
    num_sampled=3,
)


def _train(out: Path, teachers: TeacherTargets, data: TaskData, resume: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 4, 1, width_choices=(0.5, 1.0), base_channels=(8, 8, 16))
    pre = Preprocess(8, 8, 1, (0.5,), (0.5,))
    trainer.distill(bank, data, pre, CFG, out, torch.device("cpu"), teachers, resume=resume, show_progress=False)
    return bank


class _Killed(Exception):
    pass


def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    data, teachers = _task(rng), _teachers(tmp_path, rng)
    reference = _train(tmp_path / "full", teachers, data)

    real_save = trainer.save_checkpoint

    def save_then_die(folder: Path, step: int, state: dict, keep: int) -> Path:
        path = real_save(folder, step, state, keep)
        if step == 6:
            raise _Killed  # the process dies right after step 6's checkpoint
        return path

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _train(tmp_path / "cut", teachers, data)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    torch.manual_seed(123)  # the global RNG state is restored from the checkpoint, not inherited
    resumed = _train(tmp_path / "cut", teachers, data, resume=True)

    ref, got = reference.state_dict(), resumed.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref), [k for k in ref if not torch.equal(ref[k], got[k])]
    full = torch.load(tmp_path / "full/checkpoint/step-000009.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut/checkpoint/step-000009.pt", weights_only=True)
    assert full["history"] == cut["history"]
    for a, b in zip(full["optimizer"]["state"].values(), cut["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in list_checkpoints(tmp_path / "cut" / "checkpoint")] == ["step-000006.pt", "step-000009.pt"]
    assert all(sidecar_path(p).is_file() for p in list_checkpoints(tmp_path / "cut" / "checkpoint"))


def test_distributed_shards_cover_the_global_batch() -> None:
    rows = [Dist(r, 4).shard(16, "train.batch_labeled") for r in range(4)]
    assert [list(range(16))[s] for s in rows] == [list(range(i, i + 4)) for i in (0, 4, 8, 12)]
    assert Dist().shard(7, "x") == slice(0, 7)
    with pytest.raises(ConfigError, match="train.batch_unlabeled: 6 is not divisible by the 4 processes"):
        Dist(1, 4).shard(6, "train.batch_unlabeled")


# ---- slow: real processes ------------------------------------------------------------------------------------

SLOW_TASK = """\
name: kill
data: {source: optdigits, labels_per_class: 4, unlabeled: 400, test: 200}
teachers: [{source: 'ccexam:usps'}]
student: {family: resnet_cifar, width_choices: [0.5, 1.0], options: {base_channels: [8, 16, 16]}}
train: {distiller: average-kd, steps: STEPS, checkpoint_every: 3, keep_checkpoints: 2, batch_labeled: 8,
        batch_unlabeled: 16, warmup_steps: 3, num_sampled: 3, bn_calibration_images: 100}
"""


def _budget(tmp: Path) -> Path:
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text()
    path = tmp / "small.yaml"
    path.write_text(text.replace("height: 28, width: 28", "height: 8, width: 8"))
    return path


def _cmd(task: Path, budget: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgedistill", "train", "--task", str(task), "--budget", str(budget),
            "--out", str(out), "--device", "cpu", "--no-progress", *extra]  # fmt: skip


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _bank_tensors(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "bank.safetensors"))


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_reaches_the_same_weights(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(SLOW_TASK.replace("STEPS", "60"))
    budget = _budget(tmp_path)
    ref = subprocess.run(_cmd(task, budget, tmp_path / "ref"), cwd=REPO, env=ENV, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out, rnd, kills = tmp_path / "run", random.Random(0), []
    for attempt in range(4):
        extra = ("--resume",) if attempt else ()
        proc = subprocess.Popen(_cmd(task, budget, out, *extra), cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True)
        target = len(kills) * 12 + rnd.randint(3, 12)  # die somewhere after this many steps of progress
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            done = [int(p.stem.split("-")[1]) for p in list_checkpoints(out / "checkpoint")]
            if done and max(done) >= target:
                time.sleep(rnd.uniform(0.0, 0.5))  # anywhere in the following steps, even mid-write
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(max(int(p.stem.split("-")[1]) for p in list_checkpoints(out / "checkpoint")))
    assert kills == sorted(kills) and kills[-1] < 60, kills
    done = subprocess.run(_cmd(task, budget, out, "--resume"), cwd=REPO, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not list(out.rglob("*.tmp")) or all("teachers" in str(p) for p in out.rglob("*.tmp"))
    ref_w, got_w = _bank_tensors(tmp_path / "ref"), _bank_tensors(out)
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w), "resumed weights differ from the uninterrupted run"
    ref_s, got_s = (json.loads((d / "train.json").read_text()) for d in (tmp_path / "ref", out))
    assert got_s["history"] == ref_s["history"] and got_s["width_accuracy"] == ref_s["width_accuracy"]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """Same global batch on 1 process and on 2 (each half of it): the same loss curve within tolerance."""
    task = tmp_path / "task.yaml"
    task.write_text(SLOW_TASK.replace("STEPS", "40").replace("batch_labeled: 8", "batch_labeled: 16"))
    budget = _budget(tmp_path)
    one = subprocess.run(_cmd(task, budget, tmp_path / "one"), cwd=REPO, env=ENV, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run(
        [*torchrun, *_cmd(task, budget, tmp_path / "two")[1:]], cwd=REPO, env=ENV, capture_output=True, text=True
    )
    assert two.returncode == 0, two.stderr[-3000:]
    h1, h2 = (json.loads((tmp_path / d / "train.json").read_text()) for d in ("one", "two"))
    assert h2["world_size"] == 2 and h1["world_size"] == 1
    for r1, r2 in zip(h1["history"], h2["history"], strict=True):
        assert r1["step"] == r2["step"] and r1["lr"] == pytest.approx(r2["lr"])
        for k in ("ce", "kd"):
            assert r2[k] == pytest.approx(r1[k], rel=0.15, abs=0.05), (r1["step"], k, r1[k], r2[k])
    ckpts = [p.name for p in list_checkpoints(tmp_path / "two" / "checkpoint")]
    assert ckpts == ["step-000039.pt", "step-000040.pt"]
    assert not list((tmp_path / "two").rglob("*.tmp"))


def test_deterministic_mode_is_scoped() -> None:
    from edgedistill.distill.amp import deterministic

    before = torch.are_deterministic_algorithms_enabled()
    with deterministic(True):
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled() == before
