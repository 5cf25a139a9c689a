"""Everything a post-training stage needs from a run folder: budget, recipe, task data, subnet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgedistill.budget import Budget, ResolvedBudget, load_budget
from edgedistill.config import load_yaml_model
from edgedistill.data import Preprocess, TaskData, build_task_data
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.export.recipe import Recipe, load_recipe
from edgedistill.models import SlimmableBank, load_bank, load_subnet
from edgedistill.pipeline.rundir import RunDir
from edgedistill.pipeline.search import choose_subnet, read_choice, stored_choice
from edgedistill.pipeline.train import preprocess_for
from edgedistill.task import load_task


def run_budget(rd: RunDir, budget: Path | None) -> ResolvedBudget:
    """The budget given on the command line, or the one the run was trained for."""
    if budget is not None:
        return load_budget(budget)
    path = rd.require(rd.budget, "edgedistill train")
    try:
        b = load_yaml_model(path, Budget)
    except ConfigError as e:
        raise BudgetError(str(e)) from None
    return ResolvedBudget(path=str(path), budget=b, recipe=load_recipe(rd.recipe))


def find_recipe(runtime: str, precision: str, recipes_dir: Path = Path("export")) -> Recipe:
    """The shipped recipe for runtime/precision (`export/<runtime>-<precision>.yaml`, `onnx-fp32.yaml`)."""
    names = [f"{runtime}-{precision}.yaml"] + (
        ["onnx-fp32.yaml"] if (runtime, precision) == ("onnxruntime", "fp32") else []
    )
    for name in names:
        if (recipes_dir / name).is_file():
            return load_recipe(recipes_dir / name)
    raise ConfigError(f"no export recipe for {runtime} {precision}: expected {recipes_dir / names[-1]}")


@dataclass
class RunContext:
    """Loaded run: the budget in force, the task data and the subnet chosen for that budget."""

    rd: RunDir
    resolved: ResolvedBudget
    data: TaskData
    pre: Preprocess
    subnet: SlimmableBank
    subnet_path: Path
    config: list[float]
    channels: list[int]

    def test_batches(self, batch: int = 1000) -> list[tuple[np.ndarray, np.ndarray]]:
        """Normalised float32 test images with labels."""
        assert self.data.test.labels is not None
        x, y = self.data.test.images, self.data.test.labels
        return [
            (self.pre(torch.from_numpy(x[i : i + batch])).numpy(), y[i : i + batch]) for i in range(0, len(x), batch)
        ]


def load_context(run: Path, budget: Path | None = None) -> RunContext:
    """Load a trained run and the subnet chosen for the budget (the run's, or another one).

    Another budget uses its stored choice (`edgedistill search`, or an earlier export) when there is one, else the
    width search runs for it on the same bank.
    """
    rd = RunDir(run)
    rd.require(rd.train_json, "edgedistill train")
    resolved = run_budget(rd, budget)
    task, base = load_task(rd.require(rd.task, "edgedistill train"))
    data = build_task_data(task.data, base)
    pre = preprocess_for(resolved, data)
    trained_for = read_choice(rd.require(rd.search_json, "edgedistill train"))["budget"]
    name = resolved.budget.name
    stored = stored_choice(rd, name, trained_for)
    if stored is None and (budget is None or name == trained_for):
        stored = read_choice(rd.search_json) | {"subnet": str(rd.require(rd.subnet, "edgedistill train"))}
    if stored is not None:
        chosen = stored["chosen"]
        path = Path(str(stored.get("subnet") or rd.subnet))
        subnet = load_subnet(path)
        if len(chosen["config"]) != subnet.num_stages:
            raise ConfigError(
                f"{rd.search_json}: chosen.config has {len(chosen['config'])} widths, the subnet {path.name} has "
                f"{subnet.num_stages} stages; rerun `edgedistill search`"
            )
        return RunContext(rd, resolved, data, pre, subnet, path, chosen["config"], chosen["channels"])
    bank = load_bank(rd.require(rd.bank, "edgedistill train"))
    if bank.in_chans != resolved.budget.input.channels:
        raise BudgetError(f"{resolved.path}: input.channels: the bank was trained for {bank.in_chans} channels")
    result, subnet, paths = choose_subnet(
        bank, resolved, data, pre, rd, run_budget=trained_for, bn_images=task.train.bn_calibration_images
    )
    c = result.chosen
    return RunContext(rd, resolved, data, pre, subnet, paths.subnet, list(c.config), c.channels)
