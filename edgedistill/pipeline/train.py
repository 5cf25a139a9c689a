"""The `train` stage: task + budget → trained bank, per-width accuracy, chosen subnet."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml

from edgedistill.budget import ResolvedBudget, load_budget
from edgedistill.config import validate_as
from edgedistill.data import Preprocess, TaskData, build_task_data
from edgedistill.distill import distributed
from edgedistill.distill.amp import deterministic, resolve_device
from edgedistill.distill.distillers import DISTILLERS
from edgedistill.distill.evaluate import accuracy
from edgedistill.distill.multisource import TeacherReport, TeacherTargets, prepare_teachers
from edgedistill.distill.trainer import TrainState, distill
from edgedistill.errors import ConfigError, RegistryError
from edgedistill.inputs import calibration_batches, preprocess_for
from edgedistill.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from edgedistill.models import SlimmableBank, build_bank, memory_format, recalibrate_bn, save_bank
from edgedistill.options import opt, param
from edgedistill.pipeline.search import choose_subnet
from edgedistill.pipeline.train_dir import TrainDir, build_dir, check_out, open_dir
from edgedistill.pipeline.universal import domain_sampling, universal_evaluation
from edgedistill.progress import progress
from edgedistill.run import RunDir
from edgedistill.task import TaskConfig, choose_family, load_task
from edgedistill.teachers.sources import Teacher, load_teacher


def build_student(task: TaskConfig, resolved: ResolvedBudget, num_classes: int) -> SlimmableBank:
    """The task's student bank for the budget's input."""
    inp = resolved.budget.input
    s = task.student
    family = choose_family(s, inp.height, inp.width)
    torch.manual_seed(task.train.seed)
    bank = task.train.bank
    options: dict[str, object] = dict(s.options)
    options |= {"tri_head": bank.tri_head, "switchable_bn": bank.bn == "switchable"}
    options["cosine_head"] = task.train.udon.cosine_head
    try:
        return build_bank(
            family, num_classes, inp.channels, width_choices=tuple(s.width_choices), divisor=s.divisor, **options
        )
    except (TypeError, ValueError) as e:  # options the family does not take, or values it rejects
        raise ConfigError(f"task '{task.name}': student.options {s.options}: {family}: {e}") from None


def _resolve_inputs(
    rd: RunDir, budget: Path, task: Path | None, resume: bool
) -> tuple[ResolvedBudget, TaskConfig, Path]:
    resolved = load_budget(budget)
    side = max(resolved.budget.input.height, resolved.budget.input.width)
    cfg, base = _absolute_root(*load_task(task, side))
    if resume and rd.task.is_file():  # a resumed run keeps the task it started with
        stored, _ = load_task(rd.task)
        if cfg.model_dump(exclude={"train"}) != stored.model_dump(exclude={"train"}):
            raise ConfigError(f"{rd.task}: {opt('resume')} with a different task than the run was started with")
        return resolved, stored, base
    return resolved, cfg, base


def _absolute_root(cfg: TaskConfig, base: Path) -> tuple[TaskConfig, Path]:
    """The task with `data.root`, extra domains' roots and student weights absolute, for a run copy anywhere."""

    def absolute(root: str | None) -> str | None:
        return root if root is None or Path(root).is_absolute() else str((base / root).resolve())

    extra = [d.model_copy(update={"root": absolute(d.root)}) for d in cfg.data.extra_unlabeled]
    domains = [d.model_copy(update={"root": absolute(d.root)}) for d in cfg.data.domains]
    data = cfg.data.model_copy(update={"root": absolute(cfg.data.root), "extra_unlabeled": extra, "domains": domains})
    options = dict(cfg.student.options)
    weights = options.get("weights")  # `timm` student: a local weights file is relative to the task file
    if isinstance(weights, str) and not weights.startswith("packaged:"):
        options["weights"] = absolute(weights) or weights
    student = cfg.student.model_copy(update={"options": options})
    return cfg.model_copy(update={"data": data, "student": student}), base


def _check_teachers(cfg: TaskConfig, base: Path) -> dict[str, Teacher]:
    """Load every teacher once on the CPU, so that a bad source or weights file fails before the disk is touched.

    Returns them by source: the cache step moves them to the training device instead of loading them again.
    """
    if not DISTILLERS.get(cfg.train.distiller).wants_teachers(bool(cfg.teachers)):
        return {}
    return {t.source: load_teacher(t.source, "cpu", base) for t in cfg.teachers}


def teacher_targets(
    cfg: TaskConfig,
    data: TaskData,
    cache: Path,
    dev: torch.device,
    base: Path,
    show_progress: bool = False,
    loaded: dict[str, Teacher] | None = None,
) -> tuple[TeacherTargets | None, list[TeacherReport]]:
    """Cached, ranked and weighted teacher targets when the distiller uses teachers (None, [] when it does not).

    `loaded`: teachers already loaded by source (`_check_teachers`), used instead of loading them again.
    """
    distiller = DISTILLERS.get(cfg.train.distiller)
    if not distiller.wants_teachers(bool(cfg.teachers)):
        return None, []
    sources = [t.source for t in cfg.teachers]
    if not sources:
        raise ConfigError(f"task '{cfg.name}': distiller '{cfg.train.distiller}' needs teachers; the task lists none")
    ms = cfg.train.multisource
    pseudo = str(ms.pseudo_labels or getattr(distiller, "pseudo_labels", "head"))
    weigh = lambda s: distiller.weigh(s, cfg.train)  # noqa: E731
    return prepare_teachers(sources, data, ms, weigh, pseudo, cache, dev, base, show_progress, loaded=loaded)


def train_run(
    budget: Path,
    task: Path | None,
    out: Path,
    *,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    steps: int | None = None,
    distiller: str | None = None,
    teacher_cache: Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train a bank for `task`, evaluate every uniform width, search the subnet for `budget` (`choose_subnet`).

    Args:
        teacher_cache: cache folder shared between runs (entries are keyed by teacher, images and preprocessing,
            so sharing is safe); default: the run's own `teachers/` folder.

    Returns:
        The summary also written to `out/train.json`.
    """
    start = time.perf_counter()
    held: TrainDir | None = None
    try:
        with distributed.joined(resolve_device(device)) as (dd, dev):
            if dd.is_main:  # the other ranks would see rank 0's new folder; every input is checked before any write
                check_out(out, resume, overwrite)
            rd = build_dir(out, overwrite)
            resolved, cfg, base = _resolve_inputs(RunDir(out), budget, task, resume)
            updates = {k: v for k, v in {"steps": steps, "distiller": distiller}.items() if v is not None}
            if updates:  # validated like the task file's own values (bounds, types)
                train = validate_as(type(cfg.train), cfg.train.model_dump() | updates, "train options")
                cfg = cfg.model_copy(update={"train": train})
            try:
                DISTILLERS.get(cfg.train.distiller)  # unknown names fail before any work
            except RegistryError as e:
                raise ConfigError(f"{param('distiller')}: {e}") from None
            data = build_task_data(cfg.data, base)
            checked = _check_teachers(cfg, base)
            with dd.main_first():
                if dd.is_main:
                    held = open_dir(out, resume, overwrite)
                    rd = held.rd
                    _write_inputs(rd, cfg, resolved, data)
            show = show_progress and dd.is_main
            stages = {"data_seconds": time.perf_counter() - start}
            with dd.main_first():  # rank 0 fills the teacher cache; the others read it
                targets, reports = teacher_targets(cfg, data, teacher_cache or rd.teachers, dev, base, show, checked)
            stages["teachers_seconds"] = time.perf_counter() - start - sum(stages.values())
            pre = preprocess_for(resolved, data)
            bank = build_student(cfg, resolved, data.num_classes)
            with deterministic(cfg.train.deterministic):
                state = distill(
                    bank, data, pre, cfg.train, rd.root, dev, targets, resume, show_progress=show, domains=data.domains
                )
            if not dd.is_main:  # rank 0 evaluates, searches and writes the run folder
                return {"rank": dd.rank, "run": str(out), "steps": state.steps}
        stages["train_seconds"] = state.seconds
        summary = _finish(rd, cfg, resolved, data, pre, bank, state, reports, dev, dd.world, show_progress, stages)
        if held is not None:
            held.finish()
        return _located(summary, Path(out))
    finally:
        if held is not None:
            held.close()


def _located(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """The summary for the caller: the paths that train.json keeps relative to the run, joined to `out`."""
    located = summary | {"run": str(out)}
    if "skipped_list" in summary["data"]:
        located["data"] = summary["data"] | {"skipped_list": str(out / summary["data"]["skipped_list"])}
    return located


def _write_inputs(rd: RunDir, cfg: TaskConfig, resolved: ResolvedBudget, data: TaskData) -> None:
    """Resolved copies of the task, budget and recipe, and the list of skipped images, in the run folder."""
    atomic_write_text(rd.task, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    atomic_write_bytes(rd.budget, Path(resolved.path).read_bytes())
    atomic_write_text(rd.recipe, yaml.safe_dump(resolved.recipe.model_dump(mode="json"), sort_keys=False))
    if data.skipped:
        atomic_write_text(rd.skipped_images, "".join(f"{line}\n" for line in data.skipped))


def _finish(
    rd: RunDir,
    cfg: TaskConfig,
    resolved: ResolvedBudget,
    data: TaskData,
    pre: Preprocess,
    bank: SlimmableBank,
    state: TrainState,
    reports: list[TeacherReport],
    dev: torch.device,
    world: int,
    show_progress: bool,
    stages: dict[str, float],
) -> dict[str, Any]:
    """Save the bank, evaluate every uniform width, choose and save the subnet, write train.json/search.json.

    `stages` holds the wall time of the stages before (data, teachers, training); this adds the rest.
    """
    clock = time.perf_counter()
    save_bank(bank.cpu(), rd.bank)
    bank.to(dev)
    calib = calibration_batches(data, pre, cfg.train.bn_calibration_images, dev)
    assert data.test.labels is not None
    widths: dict[str, float] = {}
    universal: dict[str, Any] = {}
    recalibration = 0.0
    n = len(bank.width_choices)
    with progress("evaluate widths", 2 * n, show=show_progress, unit="BN/test pass", every_pct=1) as bar:
        for w in bank.width_choices:
            config = (w,) * bank.num_stages
            t = time.perf_counter()
            recalibrate_bn(bank, calib, config=config)
            recalibration += time.perf_counter() - t
            bar.advance()  # a line per pass: at 224 px the full width's pair took 33 s on 2 cores
            widths[str(w)] = accuracy(bank, data.test.images, data.test.labels, pre, dev, cfg.train.eval_batch)
            bar.advance()
    universal |= universal_evaluation(bank, data, pre, dev, cfg.train, "largest")  # BN: the largest's (last)
    stages["width_bn_seconds"] = recalibration  # BN recalibration of every uniform width
    stages["width_eval_seconds"] = time.perf_counter() - clock - recalibration
    clock = time.perf_counter()
    result, subnet, _ = choose_subnet(
        bank,
        resolved,
        data,
        pre,
        rd,
        run_budget=resolved.budget.name,
        bn_images=cfg.train.bn_calibration_images,
        show_progress=show_progress,
    )
    stages["search_seconds"] = time.perf_counter() - clock
    clock = time.perf_counter()
    subnet = subnet.to(dev).to(memory_format=memory_format(bank))  # saved already; evaluated in the bank's layout
    subnet_acc = accuracy(subnet, data.test.images, data.test.labels, pre, dev, cfg.train.eval_batch)
    universal |= universal_evaluation(subnet, data, pre, dev, cfg.train, "subnet")
    stages["subnet_eval_seconds"] = time.perf_counter() - clock
    summary = {
        "run": ".",  # paths in a run's records are relative to the run folder, so a run can be moved
        "task": cfg.name,
        "budget": resolved.budget.name,
        "data": data.summary() | ({"skipped_list": rd.skipped_images.name} if data.skipped else {}),
        "distiller": cfg.train.distiller,
        "similarity": cfg.train.multisource.similarity if reports else None,
        "teachers": [asdict(r) for r in reports],
        "family": bank.family,
        "device": str(dev),
        "world_size": world,
        "steps": state.steps,
        "resumed_from": state.resumed_from,
        "train_seconds": round(state.seconds, 1),
        "step_seconds": state.step_seconds,
        "preprocess": pre.manifest(),
        "width_accuracy": widths,
        "chosen": asdict(result.chosen) | {"test_accuracy": subnet_acc},
        "search": {"strategy": result.strategy, "upem": result.upem, "seconds": round(result.seconds, 2)},
        "stage_seconds": {k.removesuffix("_seconds"): round(v, 1) for k, v in stages.items()},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "history": state.history,
    } | domain_sampling(cfg.train.udon, data, state.domain_probabilities, state.history)
    if universal:
        summary["universal"] = {"map_k": cfg.train.udon.map_at_k} | universal
    atomic_write_json(rd.train_json, summary)
    return summary
