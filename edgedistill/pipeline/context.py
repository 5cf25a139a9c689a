"""Everything a post-training stage needs from a run folder: budget, task data, the subnet for the budget."""

from __future__ import annotations

from pathlib import Path

from edgedistill.data import build_task_data
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.export.job import RunContext
from edgedistill.inputs import preprocess_for
from edgedistill.models import load_bank, load_subnet
from edgedistill.pipeline.search import choose_subnet
from edgedistill.run import RunDir, read_choice, run_budget, search_paths, stored_choice
from edgedistill.task import load_task


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
        stored = read_choice(rd.search_json)
        rd.require(rd.subnet, "edgedistill train")
    if stored is not None:
        chosen = stored["chosen"]
        path = search_paths(rd, name, trained_for).subnet  # where the run keeps it, never a path read from a record
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
