"""The `search` stage: a trained bank + a budget → chosen widths, subnet, search.json and Pareto plot.

Used by `train` (the run's budget), by `search` and by `export --budget` (any other budget, same bank).
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from edgedistill.budget import ResolvedBudget
from edgedistill.data import Preprocess, TaskData
from edgedistill.errors import ConfigError
from edgedistill.inputs import calibration_batches
from edgedistill.io import atomic_write_json, sha256_file
from edgedistill.models import SlimmableBank, extract, recalibrate_bn, save_subnet
from edgedistill.models.bn import bn_batches
from edgedistill.options import opt
from edgedistill.run import RunDir, SearchPaths, search_paths
from edgedistill.runtimes import RUNTIME_SPECS
from edgedistill.search.lut import LatencyLUT, lut_name
from edgedistill.search.measure import Timing, time_and_run
from edgedistill.search.pareto import pareto_plot
from edgedistill.search.select import SearchResult, UnlabeledImages, search_widths
from edgedistill.search.strategies import SearchSettings

SEARCH_IMAGES = 2000  # unlabeled images the UPEM scores (BN: as many of the chosen subnet's calibration images)
SEARCH_PIXELS = 64 * 64  # up to this input size SEARCH_IMAGES are used; above it, fewer in proportion, down to
MIN_SEARCH_IMAGES = 256  # this many (a 224-px score is then seconds, not a minute)
SCORING_SEED = 3
ARCH_FAMILIES = {"x86_64": "x86", "amd64": "x86", "aarch64": "arm", "arm64": "arm"}
MeasureMode = Literal["auto", "on", "off"]


def search_images(pre: Preprocess) -> int:
    """Unlabeled images the search uses at this input size: the same compute per score as 2000 at 64 px or less."""
    pixels = pre.height * pre.width
    return SEARCH_IMAGES if pixels <= SEARCH_PIXELS else max(MIN_SEARCH_IMAGES, SEARCH_IMAGES * SEARCH_PIXELS // pixels)


def unlabeled_images(
    data: TaskData, pre: Preprocess, device: torch.device, n: int | None = None, bn_images: int = 2000
) -> UnlabeledImages:
    """Normalised unlabeled-pool images for the search (never test or labels); `n` by input size.

    BN is recalibrated per config on the calibration images the chosen subnet gets (`bn_images`, seed 0; the first
    `n` of them when there are more), so each config is scored as it would ship. The UPEM scores `n` other pool
    images (seeded), or the calibration images themselves when the pool holds no others.
    """
    n = search_images(pre) if n is None else n
    pool = data.target_unlabeled
    calib = data.calibration_indices(min(bn_images, len(pool)), seed=0)
    rest = np.setdiff1d(np.arange(len(pool)), calib)
    rng = np.random.default_rng(SCORING_SEED)
    scoring = np.sort(rng.choice(rest, size=min(n, len(rest)), replace=False)) if len(rest) else calib

    def load(idx: np.ndarray) -> torch.Tensor:
        return pre(torch.from_numpy(pool.subset(idx).images).to(device))

    return UnlabeledImages(bn=load(calib[:n]), eval=load(scoring))


def not_measurable(resolved: ResolvedBudget) -> str | None:
    """Why the budget's latency cannot be measured on this machine, or None when it can."""
    b = resolved.budget
    here = ARCH_FAMILIES.get(platform.machine().lower())
    if not RUNTIME_SPECS[b.target.runtime].profiler:
        return f"runtime {b.target.runtime} cannot be timed here"
    if importlib.util.find_spec(b.target.runtime) is None:
        return f"{b.target.runtime} is not installed"
    if b.device.family != here or b.device.accelerator != "cpu":
        return f"the budget's device ({b.device.family} {b.device.accelerator}) is not this machine ({here} cpu)"
    return None


def latency_table(rd: RunDir, resolved: ResolvedBudget) -> Path:
    """Where `edgedistill profile` writes the run's table for this budget's runtime/precision/input/threads."""
    b = resolved.budget
    # The recipe's precision: under `precision: auto` that is the INT8 candidate's (the budget says "auto").
    return rd.root / "latency" / lut_name(b.target.runtime, resolved.recipe.precision, b.input.shape, b.target.threads)


@dataclass
class Measurer:
    """End-to-end latency of a config as the budget's runtime runs it here (exported, quantized, own process) and,
    for an INT8 budget, the logits of that quantized artifact on the search's unlabeled images.

    BN is recalibrated for the config (on the search's BN images) before it is extracted, so the artifact scored is
    the one the search would choose, not the bank at whatever config it last scored.
    """

    bank: SlimmableBank
    resolved: ResolvedBudget
    images: UnlabeledImages
    outputs: dict[tuple[float, ...], torch.Tensor] = field(default_factory=dict)

    @property
    def int8(self) -> bool:
        return self.resolved.recipe.quantization is not None

    def __call__(self, config: tuple[float, ...]) -> dict[str, float]:
        b, recipe = self.resolved.budget, self.resolved.recipe
        timing = Timing(threads=b.target.threads, batch=b.input.batch)
        samples = recipe.quantization.calibration.samples if recipe.quantization is not None else 64
        calib = self.images.bn[:samples].cpu().numpy()
        if self.int8:
            bn = self.images.bn  # in the batches the UPEM recalibrated with: the same statistics
            recalibrate_bn(self.bank, bn_batches(bn), config=config, max_images=len(bn))
        scored = self.images.eval.cpu().numpy() if self.int8 else None
        stats, logits = time_and_run(extract(self.bank, config).cpu(), b.input.shape, recipe, timing, calib, scored)
        if logits is not None:
            self.outputs[tuple(config)] = torch.from_numpy(logits)
        return stats

    def int8_outputs(self, config: tuple[float, ...]) -> torch.Tensor:
        """The INT8 artifact's logits on the search's scoring images (`__call__` ran for `config`)."""
        return self.outputs[tuple(config)]


def choose_subnet(
    bank: SlimmableBank,
    resolved: ResolvedBudget,
    data: TaskData,
    pre: Preprocess,
    rd: RunDir,
    *,
    run_budget: str | None,
    settings: SearchSettings | None = None,
    upem: str = "agreement-widest",
    measure: MeasureMode = "auto",
    shortlist: int = 3,
    measure_limit: int = 6,
    bn_images: int = 2000,
    show_progress: bool = False,
) -> tuple[SearchResult, SlimmableBank, SearchPaths]:
    """Search the widths for `resolved`, then recalibrate BN at the choice, extract, save subnet, JSON and plot."""
    dev = next(bank.parameters()).device
    images = unlabeled_images(data, pre, dev, bn_images=bn_images)
    lut_path = latency_table(rd, resolved)
    lut = LatencyLUT.load(lut_path) if lut_path.is_file() else None
    why_not = not_measurable(resolved)
    if measure == "on" and why_not:
        raise ConfigError(
            f"{opt('measure', 'on')}: cannot measure latency for budget {resolved.budget.name}: {why_not}"
        )
    measure_fn = Measurer(bank, resolved, images) if measure != "off" and why_not is None else None
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
        measure_limit=measure_limit,
        show_progress=show_progress,
        int8_outputs=measure_fn.int8_outputs if measure_fn is not None and measure_fn.int8 else None,
    )
    if measure_fn is None:
        result.notes.append(f"latency not measured: {why_not or 'measurement turned off'}")
    paths = search_paths(rd, b.name, run_budget)
    recalibrate_bn(bank, calibration_batches(data, pre, bn_images, dev), config=result.chosen.config)
    subnet = extract(bank, result.chosen.config)
    save_subnet(subnet.cpu(), paths.subnet)
    record = result.to_json() | {
        "budget": b.name,
        "latency_table": rd.relative(lut_path) if lut is not None else None,
        "subnet": rd.relative(paths.subnet),
        "subnet_sha256": sha256_file(paths.subnet),
        "pareto": rd.relative(paths.plot),
    }
    atomic_write_json(paths.json, record)
    pareto_plot(result, b.limits, b.name, paths.plot)
    return result, subnet, paths
