"""The markdown of the search quality report (`bench/search_quality_report.py`)."""

from __future__ import annotations

from typing import Any


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _head(title: str, columns: list[str], note: str = "") -> list[str]:
    """A section title, an optional note and the header of its table."""
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return [f"## {title}", "", *([note, ""] if note else []), *table]


def _banks(result: dict[str, Any]) -> list[str]:
    columns = ["bank", "task", "labels/class", "family", "configs evaluated", "test % range", "uniform widths test %"]
    lines = _head("Banks", columns)
    for b in result["banks"]:
        lo, hi = b["accuracy_range"]
        uniform = " / ".join(f"{v:.1f}" for v in b["uniform_accuracy"].values())
        lines.append(
            f"| {b['bank']} | {b['task']} | {b['labels_per_class']} | {b['family']} | {b['configs']} of "
            f"{b['space']} | {lo:.1f}–{hi:.1f} | {uniform} |"
        )
    return lines


def _summary(result: dict[str, Any]) -> list[str]:
    lines = _head(
        "Regret over every bank and budget", ["UPEM + strategy", "mean regret pts", "worst regret pts", "cases"]
    )
    for k, v in result["summary"]["regret"].items():
        lines.append(f"| `{k}` | {v['mean']:.2f} | {v['worst']:.2f} | {v['cases']} |")
    return lines


def _rho(result: dict[str, Any]) -> list[str]:
    names = list(result["upems"])
    columns = ["bank", "budget", "feasible", "best feasible (test %)", *(f"`{n}`" for n in names)]
    note = "Over every evaluated config of the bank, then over the feasible configs of each budget."
    lines = _head("Spearman ρ with test accuracy", columns, note)
    for b in result["banks"]:
        cells = " | ".join("n/a" if b["rho"].get(n) is None else f"{b['rho'][n]:.3f}" for n in names)
        lines.append(f"| {b['bank']} | every config | {b['configs']} | - | {cells} |")
        for row in b["budgets"]:
            cells = " | ".join(_f(row["rho"].get(n), 3) if n in row["rho"] else "n/a" for n in names)
            lines.append(
                f"| {b['bank']} | {row['budget']} | {row['feasible']} | {row['best']} ({row['best_accuracy']:.2f}) "
                f"| {cells} |"
            )
    return lines


def _regret(result: dict[str, Any]) -> list[str]:
    keys = list(result["summary"]["regret"])
    lines = _head("Regret per bank and budget (pts)", ["bank", "budget", *(f"`{k}`" for k in keys)])
    for b in result["banks"]:
        for row in b["budgets"]:
            cells = " | ".join(_f(row["regret"].get(k)) for k in keys)
            lines.append(f"| {b['bank']} | {row['budget']} | {cells} |")
    return lines


def _study(result: dict[str, Any]) -> list[str]:
    columns = ["variant", "mean ρ, every config", "mean regret pts", "worst regret pts"]
    lines = _head("Study: what was tried (exhaustive search over the feasible configs)", columns)
    for name, v in result["summary"]["study"].items():
        rhos = [b["study_rho"][name] for b in result["banks"] if b["study_rho"].get(name) is not None]
        rho = sum(rhos) / len(rhos) if rhos else None
        lines.append(f"| {name} | {_f(rho, 3)} | {v['mean']:.2f} | {v['worst']:.2f} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The committed report."""
    m = result["machine"]
    lines = [
        "# Search quality across tasks",
        "",
        f"Command: `{result['command']}` ({result['created']}), after `python bench/search_quality.py --banks B` "
        "for each bank (docs/results.md#search-quality-across-tasks).",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores; versions "
        f"{', '.join(f'{k} {v}' for k, v in result['versions'].items())}.",
        "",
        "Test accuracy: BN recalibrated per config as the chosen subnet is. UPEMs: computed from the recorded outputs "
        "as the search computes them. Regret: test accuracy of the best feasible config minus that of the config the "
        "UPEM + strategy chooses (points); `predictor` scores "
        f"{result['predictor_scores']} configs. UPEMs: "
        + "; ".join(f"`{k}`: {v}" for k, v in result["upems"].items())
        + ".",
        "",
        *_banks(result),
        "",
        *_summary(result),
        "",
        *_rho(result),
        "",
        *_regret(result),
        "",
        *_study(result),
        "",
    ]
    return "\n".join(lines)
