"""Device budgets."""

from edgedistill.budget.load import DEFAULT_BUDGET, find_budgets, load_budget
from edgedistill.budget.spec import Budget, InputSpec, Limits, ResolvedBudget

__all__ = ["DEFAULT_BUDGET", "Budget", "InputSpec", "Limits", "ResolvedBudget", "find_budgets", "load_budget"]
