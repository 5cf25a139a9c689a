"""report.md's per-class section: each class's test accuracy, FP32 and the budget's artifact side by side."""

from __future__ import annotations

from typing import Any

from edgedistill.report.tables import fmt as _f
from edgedistill.report.tables import table as _table

PER_CLASS_ROWS = 20  # classes shown per artifact (the worst ones first when there are more); the manifest has all


def per_class_lines(exports: list[dict[str, Any]], target: str | None) -> list[str]:
    """Per-class test accuracy of the budget's artifact (else the first one): FP32 and the artifact side by side."""
    chosen = [e for e in exports if e.get("target") == target] or exports[:1]
    classes = ((chosen[0].get("accuracy") or {}).get("per_class") or []) if chosen else []
    if not classes:
        return []
    shown = sorted(classes, key=lambda c: c["artifact"] if c.get("artifact") is not None else c["fp32"])
    shown = shown[:PER_CLASS_ROWS] if len(classes) > PER_CLASS_ROWS else classes
    rows = [[f"`{c['name']}`", str(c["n"]), _f(c["fp32"]), _f(c.get("artifact"))] for c in shown]
    more = f" (the {PER_CLASS_ROWS} lowest of {len(classes)})" if len(classes) > PER_CLASS_ROWS else ""
    return [
        f"## Per-class accuracy: `{chosen[0]['target']}`",
        "",
        f"Test images of each class and the percent of them predicted right{more}; balanced accuracy is their mean.",
        "",
        *_table(["class", "test images", "FP32 %", "artifact %"], rows),
        "",
    ]
