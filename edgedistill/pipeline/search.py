"""The `search` stage: a trained bank + a budget → chosen widths, subnet, search.json and Pareto plot.

Used by `train` (the run's budget), by `search` and by `export --budget` (any other budget, same bank).
"""

from __future__ import annotations

import importlib.util
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from edgedistill.budget import ResolvedBudget
from edgedistill.data import Preprocess, TaskData
from edgedistill.errors import ConfigError
from edgedistill.io import atomic_write_json, sha256_file
from edgedistill.models import SlimmableBank, extract, recalibrate_bn, save_subnet
from edgedistill.options import opt
from edgedistill.pipeline.rundir import RunDir
from edgedistill.search.lut import LatencyLUT, lut_name
from edgedistill.search.measure import ARTIFACT_BUILDERS, Timing, time_module
from edgedistill.search.pareto import pareto_plot
from edgedistill.search.select import Measure, SearchResult, UnlabeledImages, search_widths
from edgedistill.search.strategies import SearchSettings

SEARCH_IMAGES = 2000  # unlabeled images: the first half recalibrates BN per config, the UPEM scores the second
ARCH_FAMILIES = {"x86_64": "x86", "amd64": "x86", "aarch64": "arm", "arm64": "arm"}
MeasureMode = Literal["auto", "on", "off"]


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
    d = rd.root / "searches"
    return SearchPaths(
        d / f"{budget_name}.json", rd.root / "subnets" / f"{budget_name}.safetensors", d / f"{budget_name}.png"
    )


def unlabeled_images(data: TaskData, pre: Preprocess, device: torch.device, n: int = SEARCH_IMAGES) -> UnlabeledImages:
    """Two disjoint, seeded draws of normalised unlabeled-pool images (never test or labels)."""
    n = min(n, len(data.target_unlabeled))
    x = pre(torch.from_numpy(data.calibration(n, seed=3).images).to(device))
    return UnlabeledImages(bn=x[: n // 2], eval=x[n // 2 :])


def not_measurable(resolved: ResolvedBudget) -> str | None:
    """Why the budget's latency cannot be measured on this machine, or None when it can."""
    b = resolved.budget
    here = ARCH_FAMILIES.get(platform.machine().lower())
    if b.target.runtime not in ARTIFACT_BUILDERS:
        return f"runtime {b.target.runtime} cannot be timed here"
    if importlib.util.find_spec(b.target.runtime) is None:
        return f"{b.target.runtime} is not installed"
    if b.device.family != here or b.device.accelerator != "cpu":
        return f"the budget's device ({b.device.family} {b.device.accelerator}) is not this machine ({here} cpu)"
    return None


def latency_table(rd: RunDir, resolved: ResolvedBudget) -> Path:
    """Where `edgedistill profile` writes the run's table for this budget's runtime/precision/input/threads."""
    b = resolved.budget
    return rd.root / "latency" / lut_name(b.target.runtime, b.target.precision, b.input.shape, b.target.threads)


def measurer(bank: SlimmableBank, resolved: ResolvedBudget, images: UnlabeledImages) -> Measure:
    """End-to-end latency of a config as the budget's runtime runs it here (exported, quantized, own process)."""
    b = resolved.budget
    timing = Timing(threads=b.target.threads, batch=b.input.batch)
    calib = images.bn[:64].cpu().numpy()

    def measure(config: tuple[float, ...]) -> dict[str, float]:
        return time_module(extract(bank, config).cpu(), b.input.shape, resolved.recipe, timing, calib)

    return measure


def choose_subnet(
    bank: SlimmableBank,
    resolved: ResolvedBudget,
    data: TaskData,
    pre: Preprocess,
    rd: RunDir,
    *,
    run_budget: str | None,
    settings: SearchSettings | None = None,
    upem: str = "agreement",
    measure: MeasureMode = "auto",
    shortlist: int = 3,
    bn_images: int = 2000,
    show_progress: bool = False,
) -> tuple[SearchResult, SlimmableBank, SearchPaths]:
    """Search the widths for `resolved`, then recalibrate BN at the choice, extract, save subnet, JSON and plot."""
    dev = next(bank.parameters()).device
    images = unlabeled_images(data, pre, dev)
    lut_path = latency_table(rd, resolved)
    lut = LatencyLUT.load(lut_path) if lut_path.is_file() else None
    why_not = not_measurable(resolved)
    if measure == "on" and why_not:
        raise ConfigError(
            f"{opt('measure', 'on')}: cannot measure latency for budget {resolved.budget.name}: {why_not}"
        )
    measure_fn = measurer(bank, resolved, images) if measure != "off" and why_not is None else None
    b = resolved.budget
    result = search_widths(
        bank,
        b.limits,
        b.input.shape,
        images,
        lut=lut,
        upem=upem,
        settings=settings,
        measure=measure_fn,
        shortlist=shortlist,
        show_progress=show_progress,
    )
    if measure_fn is None:
        result.notes.append(f"latency not measured: {why_not or 'measurement turned off'}")
    paths = search_paths(rd, b.name, run_budget)
    calib = data.calibration(min(bn_images, len(data.target_unlabeled)), 0).images
    batches = [pre(torch.from_numpy(calib[i : i + 500]).to(dev)) for i in range(0, len(calib), 500)]
    recalibrate_bn(bank, batches, config=result.chosen.config)
    subnet = extract(bank, result.chosen.config)
    save_subnet(subnet.cpu(), paths.subnet)
    record = result.to_json() | {
        "budget": b.name,
        "latency_table": str(lut_path) if lut is not None else None,
        "subnet": str(paths.subnet),
        "subnet_sha256": sha256_file(paths.subnet),
        "pareto": str(paths.plot),
    }
    atomic_write_json(paths.json, record)
    pareto_plot(result, b.limits, b.name, paths.plot)
    return result, subnet, paths


def stored_choice(rd: RunDir, budget_name: str, run_budget: str | None) -> dict[str, Any] | None:
    """A budget's earlier choice when its JSON and subnet are there and match, else None."""
    paths = search_paths(rd, budget_name, run_budget)
    if not paths.json.is_file() or not paths.subnet.is_file():
        return None
    record = json.loads(paths.json.read_text(encoding="utf-8"))
    if record.get("budget") != budget_name:
        return None
    sha = record.get("subnet_sha256")
    if sha is not None and sha != sha256_file(paths.subnet):
        return None
    return dict(record)
