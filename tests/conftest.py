"""Shared fixtures: a small real run (MNIST subset, real teachers) trained once per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURE_MAX_DROP = 2.0  # INT8 drop (pts) the 60-step session run's budget allows


def run_cli_output(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `edgedistill ARGS` run in this process."""
    from edgedistill.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """(exit code, stderr) of `edgedistill ARGS` run in this process."""
    code, _, err = run_cli_output(capsys, *args)
    return code, err


SMALL_TASK = """\
name: mnist-small
data: {source: mnist, labels_per_class: 10, unlabeled: 2000, test: 2000, seed: 0}
teachers:
  - source: ccexam:usps?crop=0.72
  - source: ccexam:svhn?invert=1
student:
  family: resnet_cifar
  width_choices: [0.25, 0.5, 0.75, 1.0]
  divisor: 8
  options: {base_channels: [16, 32, 64]}
train: {steps: 60, num_sampled: 3, batch_labeled: 32, batch_unlabeled: 64, warmup_steps: 5,
        checkpoint_every: 20, bn_calibration_images: 500, channels_last: true, bank: {loss: inplace}}
"""


def context_with_reference(trained_run: Path, tmp: pytest.TempPathFactory, name: str) -> tuple[Any, Any]:
    """A copy of the session run (no exports) loaded as a `RunContext`, with its FP32 ONNX reference exported once
    and that reference's `Accuracy` (ONNX export is the slow part; each module writes its own artifacts)."""
    from edgedistill.pipeline.context import load_context
    from edgedistill.pipeline.export import export_fp32
    from edgedistill.run import find_recipe

    run = tmp.mktemp(name) / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    ctx = load_context(run)
    _, ref = export_fp32(ctx, find_recipe("onnxruntime", "fp32"))
    return ctx, ref


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny models gain
    nothing from threads, and 2 spinning OpenMP threads made training 20x slower on a busy 2-core CI box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("task") / "task.yaml"
    path.write_text(SMALL_TASK)
    return path


def demo_int8_budget_text() -> str:
    """budgets/demo-cpu.yaml with its precision pinned to INT8: tests of the INT8 artifact itself (its bench record,
    verdict, report) must not depend on whether INT8 is faster than FP32 on this CPU, which is what the shipped
    budget's `precision: auto` decides (tests/test_precision.py tests that decision)."""
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text()
    assert "precision: auto" in text
    return text.replace("precision: auto", "precision: int8")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_task: Path) -> Path:
    """A demo-budget run trained for 60 steps on 2000 unlabeled MNIST images with the two digit teachers."""
    from edgedistill.pipeline.train import train_run

    out = tmp_path_factory.mktemp("runs") / "small"
    torch.set_num_threads(2)
    # 60 steps leave the net undertrained (~77% FP32), so its INT8 drop is noisier than a trained model's (the
    # demo's is <= 0.13 pt, README): the session budget allows FIXTURE_MAX_DROP instead of demo-cpu's 1 pt.
    budget = tmp_path_factory.mktemp("budget") / "demo-cpu.yaml"
    text = demo_int8_budget_text().replace("max_int8_drop_pts: 1.0", f"max_int8_drop_pts: {FIXTURE_MAX_DROP}")
    budget.write_text(text)
    train_run(budget, small_task, out, device="cpu", show_progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_budget(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo budget at 8x8 input (test_bad_input's helpers)."""
    from test_bad_input import budget_with

    return budget_with(tmp_path_factory.mktemp("b"), "height: 28, width: 28", "height: 8, width: 8", "small.yaml")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_budget: Path) -> Path:
    """A finished 4-step ce-only run on optdigits at 8x8 (copy it before changing it)."""
    from test_bad_input import TINY_STUDENT, TINY_TASK, TINY_TRAIN, write

    from edgedistill.pipeline.train import train_run

    tmp = tmp_path_factory.mktemp("tiny")
    task = write(tmp / "task.yaml", TINY_TASK + TINY_STUDENT + TINY_TRAIN)
    train_run(tiny_budget, task, tmp / "run", device="cpu", show_progress=False)
    return tmp / "run"
