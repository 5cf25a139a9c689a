"""Load and cross-check budget files; list the shipped ones."""

from __future__ import annotations

from pathlib import Path

from edgedistill.budget.spec import AUTO, Budget, ResolvedBudget
from edgedistill.config import load_yaml_model
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.recipe import resolve_recipe

DEFAULT_BUDGET = Path("budgets/demo-cpu.yaml")


def load_budget(path: str | Path) -> ResolvedBudget:
    """Load a budget and its export recipe.

    Raises:
        BudgetError: naming the file and field, for any invalid or inconsistent value.
    """
    p = Path(path)
    try:
        budget = load_yaml_model(p, Budget)
    except ConfigError as e:
        raise BudgetError(str(e)) from None
    try:
        recipe = resolve_recipe(budget.target.recipe, p.parent)
    except ConfigError as e:
        raise BudgetError(f"{p}: target.recipe: {e}") from None
    for field in ("runtime", "precision"):
        want, got = getattr(budget.target, field), getattr(recipe, field)
        if want == AUTO and got != "int8":  # auto: the recipe sets the INT8 candidate's quantization
            raise BudgetError(f"{p}: target.recipe: precision auto needs an int8 recipe, {recipe.name} is for {got}")
        if want not in (got, AUTO):
            raise BudgetError(f"{p}: target.recipe: recipe {recipe.name} is for {field} {got}, budget asks {want}")
    return ResolvedBudget(path=str(p), budget=budget, recipe=recipe)


def find_budgets(path: str | Path) -> list[Path]:
    """Budget files at `path` (a file, or every *.yaml in a folder)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        if not files:
            raise BudgetError(f"{p}: no budget files (*.yaml) in this folder")
        return files
    if not p.exists():
        raise BudgetError(f"{p}: file not found")
    return [p]
