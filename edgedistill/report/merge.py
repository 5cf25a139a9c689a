"""Merge a run's JSON files (train, search, export manifests, bench records) into one report dict.

Every part is optional: a missing or unreadable file is listed under `missing` and the rest is
still reported. The budget verdict is recomputed from the budget in force and the bench record of
the budget's artifact; a limit without a measurement fails (see `check_budget`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edgedistill.bench.pays import int8_speedups
from edgedistill.bench.verdict import LimitCheck, accuracy_check, check_budget, overall
from edgedistill.budget import is_auto
from edgedistill.budget.spec import ResolvedBudget
from edgedistill.config import read_json, validate_as
from edgedistill.errors import ConfigError, EdgedistillError
from edgedistill.records import BenchView, ManifestView, SearchRecord, Timing, TrainRecord
from edgedistill.run import RunDir, budget_target, run_budget

# Kept from train.json: everything but the loss history (long; the report plots latency, not training curves).
TRAIN_KEYS = (
    "task",
    "budget",
    "data",
    "distiller",
    "teachers",
    "family",
    "steps",
    "train_seconds",
    "width_accuracy",
    "chosen",
    "universal",
    "domain_sampling",
)


def _read_json(path: Path, missing: list[str], what: str, model: type[BaseModel] | None = None) -> Any:
    """The parsed file (checked against `model` when given), or None with a note in `missing`."""
    if not path.is_file():
        missing.append(f"{what} ({path.name} not found)")
        return None
    try:
        data = read_json(path)
        if model is not None:
            validate_as(model, data, str(path))
        return data
    except ConfigError as e:  # a damaged record is reported as missing, with why
        missing.append(f"{what} (unreadable: {e})")
        return None


def _result_summary(result: dict[str, Any]) -> dict[str, Any]:
    """A runner result without its per-call times (those go to the plots only)."""
    return {k: v for k, v in result.items() if k != "times_ms"}


def _label(result: dict[str, Any]) -> str:
    device = result.get("device", "cpu")
    return f"{result['runtime']} {result['precision']}" + ("" if device == "cpu" else f" ({device})")


def _exports(rd: RunDir, missing: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per artifact: manifest summary; and every latency result found (bench.json and device-runner files)."""
    exports, latencies = [], []
    folders = sorted(p for p in (rd.root / "export").glob("*") if p.is_dir()) if (rd.root / "export").is_dir() else []
    if not folders:
        missing.append("export (no runs/NAME/export/*/manifest.json)")
    for folder in folders:
        manifest = _read_json(folder / "manifest.json", missing, f"export {folder.name}", ManifestView)
        if manifest is None:
            continue
        has_bench = (folder / "bench.json").is_file()
        bench = _read_json(folder / "bench.json", missing, f"bench {folder.name}", BenchView) if has_bench else None
        exports.append(
            {
                "target": folder.name,
                "runtime": manifest.get("runtime"),
                "precision": manifest.get("precision"),
                "accuracy": manifest.get("accuracy"),
                "cost": manifest.get("cost"),
                "calibration": manifest.get("calibration"),
                "fallback": manifest.get("fallback"),
                "sensitivity": manifest.get("sensitivity"),
                "ladder": manifest.get("ladder"),
                "bench": None if bench is None else {k: bench.get(k) for k in ("budget", "verdict", "command")},
            }
        )
        results = list(bench["results"]) if bench else []
        runner_files = sorted((folder / "bench").glob("*.json"))
        results += [r for r in (_read_json(p, missing, f"bench {folder.name}", Timing) for p in runner_files) if r]
        # every result passed `Timing` (a bench.json result or a runner file): each has runtime, precision, stats
        exports[-1]["int8_speedup"] = [s.to_json() for s in int8_speedups(results)]  # recomputed: pure
        for r in results:
            timed = Path(str(r.get("artifact", ""))).name  # the reference's own artifact or subnet file
            latencies.append({"target": folder.name, "timed": timed, "label": _label(r), **r})
    if folders and not latencies:
        missing.append("bench (no bench.json; run `edgedistill bench`)")
    return exports, latencies


def _main_result(latencies: list[dict[str, Any]], target: str) -> dict[str, Any] | None:
    """The budget artifact's own timing: first result of its bench.json (its runtime and precision)."""
    own = [r for r in latencies if r["target"] == target and r["timed"] == target]
    return own[0] if own else None


def _checks(
    resolved: ResolvedBudget, exports: list[dict[str, Any]], main: dict[str, Any] | None, target: str | None
) -> list[LimitCheck]:
    cost = next((e["cost"] for e in exports if e["target"] == target and e.get("cost")), None)
    checks = check_budget(
        resolved.budget.limits,
        latency=None if main is None else main["stats"],
        macs=None if cost is None else cost.get("macs"),
        params=None if cost is None else cost.get("params"),
        peak_rss_mb=None if main is None else main.get("peak_rss_mb"),
    )
    own = next((e for e in exports if e["target"] == target and e.get("precision")), None)
    if own is not None:
        drop = accuracy_check(
            own["precision"], (own.get("accuracy") or {}).get("drop_pts"), resolved.budget.accuracy.max_int8_drop_pts
        )
        checks += [drop] if drop is not None else []
    return checks


def merge_run(run: Path, budget: Path | None = None) -> dict[str, Any]:
    """Collect everything known about `run` into one dict (see module docstring).

    Returns:
        Keys: run, budget, budget_target (None: precision auto before `bench`), precision_choice, train, search,
        exports (each with its `int8_speedup`), latency (results with `times_ms`), widths, checks,
        verdict ("PASS", "FAIL", or "UNKNOWN" without a budget), missing.

    Raises:
        ConfigError: `run` is not a directory.
    """
    rd = RunDir(Path(run))
    if not rd.root.is_dir():
        raise ConfigError(f"{rd.root}: run folder not found")
    missing: list[str] = []
    train = _read_json(rd.train_json, missing, "train", TrainRecord)
    search = _read_json(rd.search_json, missing, "search", SearchRecord)
    widths = _read_json(rd.root / "bench" / "widths.json", [], "widths") if (rd.root / "bench").is_dir() else None
    exports, latencies = _exports(rd, missing)
    resolved: ResolvedBudget | None = None
    try:
        resolved = run_budget(rd, budget)
    except EdgedistillError as e:
        missing.append(f"budget ({e})")
    checks: list[LimitCheck] = []
    main, target, choice = None, None, None
    if resolved is not None:
        target = budget_target(rd, resolved)
        if target is None:
            missing.append("deployed precision (precision auto: run `edgedistill bench` to choose)")
        else:
            main = _main_result(latencies, target)
        checks = _checks(resolved, exports, main, target)
        if is_auto(resolved.budget) and target is not None:
            choice = (_read_json(rd.deployed_json, missing, "deployed precision") or {}).get("choice")
    return {
        "run": str(rd.root),
        "budget": None if resolved is None else resolved.budget.model_dump(mode="json"),
        "budget_target": target,
        "precision_choice": choice,
        "train": None if train is None else {k: train.get(k) for k in TRAIN_KEYS if k in train},
        "search": search,
        "exports": exports,
        "latency": latencies,
        "main_result": None if main is None else _result_summary(main),
        "widths": widths,
        "checks": [c.__dict__ for c in checks],
        "verdict": "UNKNOWN" if resolved is None else ("PASS" if overall(checks) else "FAIL"),
        "missing": missing,
    }
