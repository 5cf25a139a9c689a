"""Device budgets."""

from edgedistill.budget.auto import AutoCandidates, auto_candidates, is_auto
from edgedistill.budget.load import DEFAULT_BUDGET, find_budgets, load_budget
from edgedistill.budget.spec import AUTO, Budget, InputSpec, Limits, ResolvedBudget

__all__ = [
    "AUTO",
    "DEFAULT_BUDGET",
    "AutoCandidates",
    "Budget",
    "InputSpec",
    "Limits",
    "ResolvedBudget",
    "auto_candidates",
    "find_budgets",
    "is_auto",
    "load_budget",
]
