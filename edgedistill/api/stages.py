"""The pipeline stages as Python calls: `train`, `search`, `profile`, `export`, `bench`, `emit_runner`, `report`.

Each takes the parameters of its command (`edgedistill train --help` ...), returns a typed result and raises the
same domain errors (`edgedistill.errors`), worded with the parameter names (`resume=True`, not `--resume`).
Argument types are checked first, strictly (`api/validate.py`). Progress bars are off unless asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edgedistill.api.bench_results import BenchResult, ReportResult, RunnerFolder
from edgedistill.api.results import ExportResult, ProfileResult, SearchResult, TrainResult
from edgedistill.api.validate import PathArg, as_path, strict_args
from edgedistill.budget.load import DEFAULT_BUDGET
from edgedistill.config import read_json
from edgedistill.errors import ConfigError
from edgedistill.options import param

DEMO_RUN = "runs/demo"


_OFF = {"sensitivity_images": "no sensitivity report", "sensitivity_top_k": "SQNR only"}
_COUNTS = {name: f"a whole number ≥ 0 (0: {off})" for name, off in _OFF.items()}  # what the sensitivity options take


@strict_args
def train(
    budget: PathArg = DEFAULT_BUDGET,
    task: PathArg | None = None,
    out: PathArg = DEMO_RUN,
    *,
    device: str = "auto",
    steps: int | None = None,
    distiller: str | None = None,
    teacher_cache: PathArg | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Distil `task` into a bank in `out`, choose the widths for `budget`.

    `task=None` trains the packaged default for the budget's input: the MNIST demo task up to 64 px, the grocery
    photo task (`groceries-224`, pretrained Lite0 bank) above.

    Raises:
        ConfigError: Bad budget/task, or `out` holds a run and neither `resume` nor `overwrite` is set.
    """
    from edgedistill.pipeline.train import train_run

    if steps is not None and steps < 1:
        raise ConfigError(f"{param('steps')}: expected at least 1, got {steps}")
    summary = train_run(
        Path(budget),
        as_path(task),
        Path(out),
        device=device,
        resume=resume,
        overwrite=overwrite,
        steps=steps,
        distiller=distiller,
        teacher_cache=as_path(teacher_cache),
        show_progress=progress,
    )
    return TrainResult.from_dict(summary)


@strict_args
def search(
    run: PathArg = DEMO_RUN,
    budget: PathArg | None = None,
    *,
    strategy: str = "auto",
    upem: str = "agreement-widest",
    seed: int = 0,
    population: int = 100,
    evaluations: int = 500,
    measure: Literal["auto", "on", "off"] = "auto",
    shortlist: int = 3,
    measure_limit: int = 6,
    time_budget: float = 60.0,
    progress: bool = False,
) -> SearchResult:
    """Choose the widths of the run's bank for `budget` (None: the run's own) without retraining.

    `time_budget`: with `strategy="auto"`, the seconds of planned scoring above which the predictor search runs.
    """
    from edgedistill.pipeline.search_run import search_run
    from edgedistill.search import SearchSettings

    settings = SearchSettings(
        strategy=strategy, seed=seed, population=population, evaluations=evaluations, time_budget_s=time_budget
    )
    result, paths, resolved = search_run(
        Path(run),
        as_path(budget),
        settings=settings,
        upem=upem,
        measure=measure,
        shortlist=shortlist,
        measure_limit=measure_limit,
        show_progress=progress,
    )
    limits = resolved.budget.limits.latency_ms
    stat = limits.items()[0][0] if limits is not None and limits.items() else "p90"
    return SearchResult(
        raw=read_json(paths.json),  # what search wrote: the choice, runner-ups, notes
        run=Path(run),
        budget=resolved.budget.name,
        strategy=result.strategy,
        upem=result.upem,
        chosen=result.chosen,
        runner_ups=tuple(result.runner_ups),
        measured=tuple(result.measured),
        evaluated=len(result.evaluated),
        space=result.space,
        rejected=result.rejected,
        seconds=result.seconds,
        measure_seconds=result.measure_seconds,
        notes=tuple(result.notes),
        latency_stat=stat,
        json=paths.json,
        subnet=paths.subnet,
        plot=paths.plot,
        resolved=resolved,
        measure_log=tuple(result.measure_log),
        confidence=None if result.confidence is None else result.confidence.to_json(),
    )


def _hw(value: str | tuple[int, int]) -> tuple[int, int]:
    parts = [str(v) for v in value] if isinstance(value, tuple) else value.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 0 < int(p) <= 4096 for p in parts):  # the budgets' input limit
        raise ConfigError(f"{param('input')}: expected HxW such as 28x28, each side 1 to 4096, got '{value}'")
    return int(parts[0]), int(parts[1])


@strict_args
def profile(
    run: PathArg = DEMO_RUN,
    *,
    runtime: str = "onnxruntime",
    precision: str = "int8",
    input: str | tuple[int, int] = "28x28",
    threads: int = 1,
    batch: int = 1,
    out: PathArg | None = None,
    progress: bool = False,
) -> ProfileResult:
    """Time every distinct block shape of the run's bank (`input` "HxW" or (H, W)); writes the latency table."""
    from edgedistill.pipeline.search_run import profile_run

    height, width = _hw(input)
    lut, path = profile_run(
        Path(run),
        runtime=runtime,
        precision=precision,
        height=height,
        width=width,
        threads=threads,
        batch=batch,
        out=as_path(out),
        show_progress=progress,
    )
    return ProfileResult(path=Path(path), lut=lut)


@strict_args(expect=_COUNTS)
def export(
    run: PathArg = DEMO_RUN,
    *,
    budget: PathArg | None = None,
    target: str | None = None,
    recipe: PathArg | None = None,
    precision: Literal["int8", "fp16", "fp32"] | None = None,
    calibration_samples: int | None = None,
    allow_small_calibration: bool = False,
    fallback: Literal["none", "auto", "qat"] = "none",
    sensitivity_images: int | None = None,
    sensitivity_top_k: int | None = None,
    qad_steps: int | None = None,
    qad_lr: float | None = None,
) -> ExportResult:
    """Export the run's chosen subnet: FP32 ONNX reference, then the budget's target (or `target`/`precision`).

    `fallback`: "auto", when INT8 misses the accuracy budget, tries bias correction then AdaRound (the manifest's
    `ladder`), then keeps the most sensitive layers in float, then runs quantization-aware distillation (QAD) if that
    still misses or keeps most layers in float; "qat" always runs QAD
    (`qad_steps`, `qad_lr` override the recipe's `qad:` settings).
    An INT8 export also writes its per-layer sensitivity report (`result.sensitivity`) on `sensitivity_images`
    unlabeled pool images (0: none), with single-layer disagreement for the `sensitivity_top_k` worst layers
    (None: the recipe's `quantization.sensitivity`).
    Under a `precision: auto` budget with neither `target`, `precision` nor `recipe`, every precision of the
    budget's runtime is exported (`notes` says which were skipped or missed the accuracy budget); `bench` decides.

    Raises:
        ExportError: Quantization failed or the artifact drops more accuracy than the budget allows.
    """
    from edgedistill.pipeline.export import auto_notes, export_run

    if calibration_samples is not None and calibration_samples < 1:
        raise ConfigError(f"{param('calibration_samples')}: expected at least 1, got {calibration_samples}")
    for name, value in (("sensitivity_images", sensitivity_images), ("sensitivity_top_k", sensitivity_top_k)):
        if value is not None and value < 0:
            raise ConfigError(f"{param(name)}: expected {_COUNTS[name]}, got {value!r}")
    manifests = export_run(
        Path(run),
        budget=as_path(budget),
        runtime=target,
        precision=precision,
        recipe=as_path(recipe),
        calibration_samples=calibration_samples,
        allow_small_calibration=allow_small_calibration,
        fallback=fallback,
        sensitivity_images=sensitivity_images,
        sensitivity_top_k=sensitivity_top_k,
        qad_steps=qad_steps,
        qad_lr=qad_lr,
    )
    notes = auto_notes(Path(run), manifests, as_path(budget))
    return ExportResult(run=Path(run), manifests=tuple(manifests), notes=tuple(notes))


@strict_args
def bench(
    run: PathArg | None = None,
    *,
    artifact: PathArg | None = None,
    budget: PathArg | None = None,
    threads: int | None = None,
    runs: int = 200,
    min_time: float = 1.0,
    warmup: int = 20,
    warmup_time: float = 0.0,
    batch: int | None = None,
    input: str = "random",
    device: str = "cpu",
    reference: bool = True,
    widths: bool = False,
) -> BenchResult:
    """Time the budget's artifact of `run` (or `artifact`) in its own process, plus references; judge the budget.

    With neither `run` nor `artifact`, benchmarks runs/demo (as the command does).
    """
    from edgedistill.pipeline.bench import BenchOptions, bench_run

    for name, value, least in (("runs", runs, 10), ("threads", threads, 1), ("batch", batch, 1), ("warmup", warmup, 0)):
        if value is not None and value < least:
            raise ConfigError(f"{param(name)}: expected at least {least}, got {value}")
    if run is None and artifact is None:
        run = DEMO_RUN
    options = BenchOptions(
        threads=threads,
        batch=batch,
        runs=runs,
        warmup=warmup,
        min_time_s=min_time,
        warmup_time_s=warmup_time,
        input=str(input),
        device=device,
    )
    record = bench_run(
        as_path(run),
        artifact=as_path(artifact),
        budget=as_path(budget),
        options=options,
        reference=reference,
        widths=widths,
    )
    return BenchResult.from_dict(record)


@strict_args
def emit_runner(
    out: PathArg,
    *,
    run: PathArg | None = None,
    artifact: PathArg | None = None,
    budget: PathArg | None = None,
    threads: int | None = None,
) -> RunnerFolder:
    """Write a folder to copy to the device (torch-free runner + artifact + run.sh) instead of timing here."""
    from edgedistill.pipeline.emit_runner import emit_runner as emit

    if run is None and artifact is None:
        run = DEMO_RUN
    folder = emit(Path(out), run=as_path(run), artifact=as_path(artifact), budget=as_path(budget), threads=threads)
    lines = (folder / "README.md").read_text(encoding="utf-8").splitlines()
    return RunnerFolder(path=folder, instructions=lines[2] if len(lines) > 2 else "")


@strict_args
def report(run: PathArg = DEMO_RUN, *, out: PathArg | None = None, budget: PathArg | None = None) -> ReportResult:
    """Merge the run's train, search, export and bench JSON into report.md + report.json + plots."""
    from edgedistill.pipeline.report import write_report

    return ReportResult.from_dict(Path(run), write_report(Path(run), out=as_path(out), budget=as_path(budget)))
