"""A run folder (`runs/NAME/`): its layout, the budget in force, recipe lookup and stored width choices.

Light on purpose (pydantic and YAML, no torch): `report` and `bench` read run folders through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.budget import Budget, ResolvedBudget, is_auto, load_budget
from edgedistill.config import load_yaml_model, read_json_mapping
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.io import sha256_file
from edgedistill.options import command
from edgedistill.outputs import check_safe_name, inside
from edgedistill.recipe import Recipe, load_recipe

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

    def require(self, path: Path, made_by: str) -> Path:
        """`path`, or a ConfigError telling which command makes it."""
        if not path.exists():
            raise ConfigError(f"{path}: not found; run `{command(made_by)}` first")
        return path


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


def find_recipe(runtime: str, precision: str, recipes_dir: Path = Path("export")) -> Recipe:
    """The shipped recipe for runtime/precision (`export/<runtime>-<precision>.yaml`, `onnx-fp32.yaml`)."""
    names = [f"{runtime}-{precision}.yaml"] + (
        ["onnx-fp32.yaml"] if (runtime, precision) == ("onnxruntime", "fp32") else []
    )
    for name in names:
        if (recipes_dir / name).is_file():
            return load_recipe(recipes_dir / name)
    raise ConfigError(f"no export recipe for {runtime} {precision}: expected {recipes_dir / names[-1]}")


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
    chosen = record["chosen"]
    ok = isinstance(chosen, dict) and all(isinstance(chosen.get(k), list) for k in ("config", "channels"))
    if not ok or not all(isinstance(w, (int, float)) and 0 < w <= 1 for w in chosen["config"]):
        raise ConfigError(f"{path}: chosen: needs 'config' (width multipliers in (0, 1]) and 'channels' lists")
    if not all(isinstance(c, int) and c > 0 for c in chosen["channels"]) or not chosen["config"]:
        raise ConfigError(f"{path}: chosen.channels: needs positive channel counts, one config entry per stage")
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
