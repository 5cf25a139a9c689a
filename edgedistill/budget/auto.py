"""`precision: auto`: the export recipes of every precision a budget's runtime runs, built from its INT8 recipe.

The FP32 and FP16 candidates copy the INT8 recipe's opset, batch and build settings without its quantization, so
the three artifacts differ only in precision. Light (pydantic only), like the rest of `budget`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgedistill.budget.spec import AUTO, Budget, ResolvedBudget
from edgedistill.recipe import Recipe
from edgedistill.runtimes import runtime_spec

CANDIDATE_ORDER = ("fp32", "fp16", "int8")
# Precisions a runtime could run but edgedistill does not export for it, and why (shown in the report).
NOT_EXPORTED = {
    ("onnxruntime", "fp16"): "not exported: ONNX Runtime's CPU execution provider has few FP16 kernels and runs "
    "FP16 models through casts, usually slower than FP32",
}


@dataclass(frozen=True)
class AutoCandidates:
    """The recipes `precision: auto` exports (highest precision first) and the precisions it skips, with why."""

    recipes: tuple[Recipe, ...]
    skipped: dict[str, str]

    def recipe(self, precision: str) -> Recipe | None:
        return next((r for r in self.recipes if r.precision == precision), None)


def is_auto(budget: Budget) -> bool:
    """Whether the budget leaves the precision to `bench` (`target.precision: auto`)."""
    return budget.target.precision == AUTO


def float_recipe(int8: Recipe, precision: str) -> Recipe:
    """The FP32/FP16 twin of an INT8 recipe: same runtime, opset, batch and build settings, no quantization."""
    data = int8.model_dump()
    data.update(
        name=f"{int8.runtime}-{precision}",
        precision=precision,
        quantization=None,
        accuracy_control=False,
        variant=None,
    )
    return Recipe.model_validate(data)


def auto_candidates(resolved: ResolvedBudget) -> AutoCandidates:
    """Every precision the budget's runtime runs (its INT8 from the budget's recipe), and the ones skipped.

    Raises:
        ValueError: The budget is not `precision: auto` (a programming error: check `is_auto` first).
    """
    if not is_auto(resolved.budget):
        raise ValueError(f"budget {resolved.budget.name} has precision {resolved.budget.target.precision}, not auto")
    runtime = resolved.budget.target.runtime
    supported = runtime_spec(runtime).precisions
    recipes, skipped = [], {}
    for p in CANDIDATE_ORDER:
        why = NOT_EXPORTED.get((runtime, p))
        if why is None and p not in supported:
            why = f"not exported: {runtime} has no {p} support"
        if why is not None:
            skipped[p] = why
        else:
            recipes.append(resolved.recipe if p == "int8" else float_recipe(resolved.recipe, p))
    return AutoCandidates(tuple(recipes), skipped)
