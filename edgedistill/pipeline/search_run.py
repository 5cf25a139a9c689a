"""`search_run` and `profile_run`: the `edgedistill search` and `edgedistill profile` stages on a run folder."""

from __future__ import annotations

from pathlib import Path

import torch

from edgedistill.budget import ResolvedBudget
from edgedistill.data import build_task_data
from edgedistill.errors import BudgetError, ResourceError
from edgedistill.inputs import preprocess_for
from edgedistill.models import SlimmableBank, load_bank
from edgedistill.options import param
from edgedistill.outputs import check_replace, json_marked
from edgedistill.pipeline.search import MeasureMode, choose_subnet
from edgedistill.run import RunDir, SearchPaths, find_recipe, run_budget
from edgedistill.rundir_guard import writes_run
from edgedistill.runtimes import RUNTIME_SPECS
from edgedistill.search.lut import LUT_FORMAT, LatencyLUT, lut_name
from edgedistill.search.measure import ARTIFACT_BUILDERS, Timing
from edgedistill.search.profile import profile_bank
from edgedistill.search.select import SearchResult
from edgedistill.search.strategies import SearchSettings
from edgedistill.task import load_task


def _bank(rd: RunDir, channels: int | None = None, source: str | None = None) -> SlimmableBank:
    bank = load_bank(rd.require(rd.bank, "edgedistill train"))
    if channels is not None and bank.in_chans != channels:
        where = source or param("input")
        raise BudgetError(f"{where}: the bank was trained for {bank.in_chans} input channels, not {channels}")
    return bank


@writes_run("search")
def search_run(
    run: Path,
    budget: Path | None,
    *,
    settings: SearchSettings | None = None,
    upem: str = "agreement-widest",
    measure: MeasureMode = "auto",
    shortlist: int = 3,
    measure_limit: int = 6,
    show_progress: bool = True,
) -> tuple[SearchResult, SearchPaths, ResolvedBudget]:
    """Choose widths of the run's bank for `budget` (default: the run's) without retraining."""
    rd = RunDir(run)
    rd.require(rd.train_json, "edgedistill train")
    resolved = run_budget(rd, budget)
    trained_for = run_budget(rd, None).budget.name
    task, base = load_task(rd.require(rd.task, "edgedistill train"))
    data = build_task_data(task.data, base)
    bank = _bank(rd, resolved.budget.input.channels, f"{resolved.path}: input.channels")
    result, _, paths = choose_subnet(
        bank,
        resolved,
        data,
        preprocess_for(resolved, data),
        rd,
        run_budget=trained_for,
        settings=settings,
        upem=upem,
        measure=measure,
        shortlist=shortlist,
        measure_limit=measure_limit,
        bn_images=task.train.bn_calibration_images,
        show_progress=show_progress,
    )
    return result, paths, resolved


def _check_memory(bank: SlimmableBank, shape: tuple[int, int, int, int]) -> None:
    """Refuse an input whose widest full-resolution activation would not fit in half the available memory."""
    import psutil

    widest = max((p.shape[0] for p in bank.parameters() if p.ndim == 4), default=1)
    need = 4 * shape[0] * widest * shape[2] * shape[3]  # float32, one activation at the input's resolution
    free = psutil.virtual_memory().available
    if need > free // 2:
        raise ResourceError(
            f"{param('input')} {shape[2]}x{shape[3]}, {param('batch')} {shape[0]}: one activation of the bank would "
            f"take {need / 2**30:.1f} GiB, this machine has {free / 2**30:.1f} GiB available; use a smaller input"
        )


@writes_run("profile")
def profile_run(
    run: Path,
    *,
    runtime: str,
    precision: str,
    height: int,
    width: int,
    threads: int = 1,
    batch: int = 1,
    out: Path | None = None,
    show_progress: bool = True,
) -> tuple[LatencyLUT, Path]:
    """Build the latency table of the run's bank for a runtime/precision/input/threads on this machine."""
    if runtime not in RUNTIME_SPECS:
        raise BudgetError(f"{param('runtime')}: unknown runtime '{runtime}'; known: {', '.join(RUNTIME_SPECS)}")
    ARTIFACT_BUILDERS.get(runtime)  # a runtime that cannot be timed here fails before any work
    recipe = find_recipe(runtime, precision)
    rd = RunDir(run)
    bank = _bank(rd)
    shape = (batch, bank.in_chans, height, width)
    _check_memory(bank, shape)
    path = out or rd.root / "latency" / lut_name(runtime, precision, shape, threads)
    check_replace(path, param("out"), json_marked("format", LUT_FORMAT))
    torch.set_num_threads(1)  # keep this process quiet while the runner processes time the blocks
    lut = profile_bank(bank, recipe, shape, Timing(threads=threads, batch=batch), path, show_progress)
    return lut, path
