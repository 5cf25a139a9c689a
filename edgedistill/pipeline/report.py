"""The `report` stage: merge a run's JSON into report.md + report.json + PNGs, with the budget verdict."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgedistill.errors import ResourceError
from edgedistill.io import atomic_write_json, atomic_write_text
from edgedistill.options import param
from edgedistill.outputs import check_output_dir, check_replace, claim_dir, forget_file, record_files
from edgedistill.report.markdown import render_markdown
from edgedistill.report.merge import merge_run
from edgedistill.report.plots import latency_plot, pareto_plot, sensitivity_plot
from edgedistill.rundir_guard import writes_run

REPORT_FILES = ("report.md", "report.json", "latency.png", "pareto.png", "sensitivity.png")


def _latency_limit(report: dict[str, Any]) -> tuple[str, float] | None:
    """The budget's first latency limit (statistic, ms), for the plots' budget line."""
    limits = ((report.get("budget") or {}).get("limits") or {}).get("latency_ms") or {}
    set_limits = [(k, v) for k, v in limits.items() if v is not None]
    return set_limits[0] if set_limits else None


def _render(report: dict[str, Any], stage: Path, out: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Write report.md, report.json and the plots into `stage`; returns (stored report, plots by description)."""
    limit = _latency_limit(report)
    plots: dict[str, str] = {}
    if latency_plot(report["latency"], stage / "latency.png", limit) is not None:
        plots["latency histogram and CDF per runtime"] = "latency.png"
    if pareto_plot(report, stage / "pareto.png", limit) is not None:
        plots["accuracy vs latency: widths and precisions, budget line"] = "pareto.png"
    if sensitivity_plot(report["exports"], stage / "sensitivity.png") is not None:
        plots["INT8 sensitivity per layer, most sensitive first"] = "sensitivity.png"
    for name, what in (("latency.png", "per-call latency plots"), ("pareto.png", "Pareto plot")):
        if name not in plots.values():
            report["missing"].append(f"{what} (no data: needs bench results with per-call times / accuracies)")
    report["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["paths"] = {
        "markdown": str(out / "report.md"),
        "json": str(out / "report.json"),
        "plots": [str(out / p) for p in plots.values()],
    }
    stored = {**report, "latency": [{k: v for k, v in r.items() if k != "times_ms"} for r in report["latency"]]}
    if stored.get("widths"):
        stored["widths"] = {
            **stored["widths"],
            "widths": [{k: v for k, v in w.items() if k != "times_ms"} for w in stored["widths"].get("widths", [])],
        }
    atomic_write_json(stage / "report.json", stored)
    atomic_write_text(stage / "report.md", render_markdown(report, plots))
    return stored, plots


@writes_run("report")
def write_report(run: Path, out: Path | None = None, budget: Path | None = None) -> dict[str, Any]:
    """Write `report.md`, `report.json` and the plots to `out` (default `runs/NAME/report/`).

    Returns:
        The report dict (as in report.json) with `paths` of what was written.

    Raises:
        ConfigError: The run folder does not exist.
    """
    report = merge_run(run, budget)
    out = Path(out) if out is not None else Path(run) / "report"
    check_output_dir(out, param("out"))
    for name in REPORT_FILES:  # every file this report would replace is checked before the first write
        check_replace(out / name, param("out"))
    stage: Path | None = None
    try:  # every file is made in `stage` first: a failure (full disk, Ctrl-C) leaves the previous report as it was
        claim_dir(out, "report")
        stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
        stored, plots = _render(report, stage, out)
        for name in ("report.json", "report.md", *plots.values()):
            os.replace(stage / name, out / name)
    except OSError as e:
        raise ResourceError(
            f"{out}: could not write the report ({e.strerror or e}); the previous one is unchanged"
        ) from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    for name in {"latency.png", "pareto.png", "sensitivity.png"} - set(plots.values()):
        forget_file(out, name)  # never leave a stale figure from an earlier report
    record_files(out, "report", ["report.json", "report.md", *plots.values()])
    return stored
