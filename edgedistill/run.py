"""A run folder (`runs/NAME/`): its layout, the budget in force, recipe lookup and stored width choices.

Light on purpose (pydantic and YAML, no torch): `report` and `bench` read run folders through it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.budget import Budget, ResolvedBudget, is_auto, load_budget
from edgedistill.config import load_yaml_model, read_json_mapping, validate_as
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.io import sha256_file
from edgedistill.options import command
from edgedistill.outputs import check_safe_name, inside, resolves_inside
from edgedistill.recipe import Recipe, builtin_recipe, load_recipe
from edgedistill.records import SearchRecord
from edgedistill.rundir_guard import staged, swap_in

FP32_TARGET = "onnxruntime-fp32"  # the FP32 ONNX reference every export writes first


@dataclass(frozen=True)
class RunDir:
    """Paths of one run's files."""

    root: Path

    @property
    def budget(self) -> Path:
        return self.root / "budget.yaml"

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def task(self) -> Path:
        return self.root / "task.yaml"

    @property
    def bank(self) -> Path:
        return self.root / "bank.safetensors"

    @property
    def subnet(self) -> Path:
        return self.root / "subnet.safetensors"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoint"

    @property
    def teachers(self) -> Path:
        return self.root / "teachers"

    @property
    def skipped_images(self) -> Path:
        return self.root / "skipped_images.txt"

    @property
    def train_json(self) -> Path:
        return self.root / "train.json"

    @property
    def search_json(self) -> Path:
        return self.root / "search.json"

    def export_dir(self, target: str) -> Path:
        return self.root / "export" / target

    @property
    def deployed_json(self) -> Path:
        """`precision: auto`: which artifact `bench` deployed for which budget, and why."""
        return self.root / "bench" / "deployed.json"

    def relative(self, path: Path) -> str:
        """`path` as a record stores it: relative to the run folder (POSIX), so the run can be moved or copied."""
        return Path(path).relative_to(self.root).as_posix()

    def stored(self, value: object, source: Path, key: str) -> Path:
        """A path read from a record, resolved against the run folder; one that leaves the run is refused.

        Raises:
            ConfigError: `value` is not a string, or resolves (symlinks followed) outside the run folder.
        """
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ConfigError(f"{source}: {key}: expected a path inside the run folder, got {value!r}")
        path = self.root / value
        try:
            ok = resolves_inside(self.root, path)
        except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
            raise ConfigError(f"{source}: {key}: {value!r} cannot be resolved ({e.__class__.__name__})") from None
        if not ok:
            raise ConfigError(f"{source}: {key}: {value} points outside the run folder {self.root}; refused")
        return path

    def require(self, path: Path, made_by: str) -> Path:
        """`path`, or a ConfigError telling which command makes it."""
        if not path.exists():
            raise ConfigError(f"{path}: not found; run `{command(made_by)}` first")
        return path


@dataclass(frozen=True)
class StagedRunDir(RunDir):
    """A run whose artifact folders are built beside their place (`export/.T.edgedistill-new`) and swapped in whole.

    `commit()` swaps every folder built so far into place; `discard()` removes them. An interrupted export thus
    leaves every previous artifact as it was, never a model from one export with the manifest of another.
    """

    building: dict[str, Path] = field(default_factory=dict)

    def export_dir(self, target: str) -> Path:
        if target not in self.building:
            self.building[target] = staged(super().export_dir(target))
        return self.building[target]

    def commit(self) -> None:
        for target, stage in list(self.building.items()):
            swap_in(stage, super().export_dir(target))
            del self.building[target]

    def discard(self) -> None:
        for stage in self.building.values():
            shutil.rmtree(stage, ignore_errors=True)
        self.building.clear()


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


def budget_target(rd: RunDir, resolved: ResolvedBudget) -> str | None:
    """The artifact folder the budget deploys: its recipe's, or under `precision: auto` the one `bench` chose.

    None when the budget is `auto` and `bench` has not decided for it yet.
    """
    if not is_auto(resolved.budget):
        return resolved.recipe.target
    if not rd.deployed_json.is_file():
        return None
    record = read_json_mapping(rd.deployed_json, ("budget", "target"), "edgedistill bench")
    return str(record["target"]) if record["budget"] == resolved.budget.name else None


def find_recipe(runtime: str, precision: str) -> Recipe:
    """The shipped recipe for runtime/precision (`<runtime>-<precision>`; ONNX Runtime FP32: `onnx-fp32`)."""
    name = "onnx-fp32" if (runtime, precision) == ("onnxruntime", "fp32") else f"{runtime}-{precision}"
    try:
        return builtin_recipe(name)
    except ConfigError:
        raise ConfigError(f"no shipped export recipe for {runtime} {precision} (expected '{name}')") from None


@dataclass(frozen=True)
class SearchPaths:
    """Where one budget's choice is written in a run folder."""

    json: Path
    subnet: Path
    plot: Path


def search_paths(rd: RunDir, budget_name: str, run_budget: str | None) -> SearchPaths:
    """The run's own budget: top-level files; another: `searches/NAME.json|.png` and `subnets/NAME.safetensors`."""
    if budget_name == run_budget:
        return SearchPaths(rd.search_json, rd.subnet, rd.root / "pareto.png")
    name = check_safe_name(budget_name, "budget name")
    d = rd.root / "searches"
    paths = SearchPaths(d / f"{name}.json", rd.root / "subnets" / f"{name}.safetensors", d / f"{name}.png")
    for p in (paths.json, paths.subnet, paths.plot):
        inside(rd.root, p, "a stored search")
    return paths


def read_choice(path: Path) -> dict[str, Any]:
    """A stored search record (`search.json`, `searches/NAME.json`), checked for the keys later stages read.

    Raises:
        ConfigError: Not JSON, a key missing, or a chosen config whose widths and channels do not pair up.
    """
    record = read_json_mapping(path, ("budget", "chosen"), "edgedistill search")
    validate_as(SearchRecord, record, str(path))
    if len(record["chosen"]["config"]) != len(record["chosen"]["channels"]):
        raise ConfigError(f"{path}: chosen: 'config' and 'channels' need one entry per stage each")
    rd = RunDir(path.parent if path.parent.name != "searches" else path.parent.parent)
    for key in ("subnet", "pareto", "latency_table"):  # written relative to the run; never followed elsewhere
        if record.get(key) is not None:
            rd.stored(record[key], path, key)
    return record


def stored_choice(rd: RunDir, budget_name: str, run_budget: str | None) -> dict[str, Any] | None:
    """A budget's earlier choice when its JSON and subnet are there and match, else None."""
    paths = search_paths(rd, budget_name, run_budget)
    if not paths.json.is_file() or not paths.subnet.is_file():
        return None
    record = read_choice(paths.json)
    if record.get("budget") != budget_name:
        return None
    sha = record.get("subnet_sha256")
    if sha is not None and sha != sha256_file(paths.subnet):
        return None
    return dict(record)
