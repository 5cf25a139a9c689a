"""Bank training ablation (issue 5): in-place KD vs SEED vs SEED+OSTC, and each width trained alone.

The task's data split and teacher targets are prepared once; then, for every training seed (initialisation,
batch and width sampling), each variant trains a fresh student with the task's recipe (distiller, steps,
batches) and is evaluated at every uniform width (BN recalibrated on the unlabeled pool, test split top-1):

- `inplace`: the bank with in-place KD from the largest width (US-Nets/OFA).
- `seed`: the bank with SEED (confidence-weighted sharpened ensemble of the K sampled widths).
- `seed-ostc`: SEED with the OSTC tri-classifier (deployed head C_a gets only SEED).
- `alone`: for each width w, a bank whose only width is w (one net per step, no bank loss) trained with the
  same distiller, steps and batches: the reference each bank width should match.

    python bench/bank_quality.py [--task T] [--seeds 0 1 2] [--variants inplace seed seed-ostc alone]
        [--steps N] [--out bench/results/bank_quality]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import edgedistill as ed
from edgedistill.bench.machine import machine_info
from edgedistill.data import build_task_data
from edgedistill.distill.amp import resolve_device
from edgedistill.distill.distillers import DISTILLERS
from edgedistill.distill.evaluate import accuracy
from edgedistill.distill.multisource import prepare_teachers
from edgedistill.distill.trainer import distill
from edgedistill.inputs import calibration_batches, preprocess_for
from edgedistill.io import atomic_write_json, atomic_write_text
from edgedistill.models import recalibrate_bn
from edgedistill.pipeline.train import build_student
from edgedistill.task import TaskConfig, load_task

REPO = Path(__file__).resolve().parents[1]

BANKS: dict[str, dict[str, Any]] = {
    "inplace": {"loss": "inplace", "tri_head": False},
    "seed": {"loss": "seed", "tri_head": False},
    "seed-ostc": {"loss": "seed", "tri_head": True},
}


def _variant(cfg: TaskConfig, seed: int, bank: dict[str, Any], width: float | None = None) -> TaskConfig:
    """The task with training seed `seed` and the bank loss settings; `width`: a student with that single width."""
    train = cfg.train.model_copy(update={"seed": seed, "bank": cfg.train.bank.model_copy(update=bank)})
    student = cfg.student
    if width is not None:
        train = train.model_copy(update={"num_sampled": 1})
        student = student.model_copy(update={"width_choices": [width]})
    return cfg.model_copy(update={"train": train, "student": student})


def _train_and_eval(cfg: TaskConfig, ctx: dict[str, Any], out: Path) -> tuple[dict[str, float], float]:
    bank = build_student(cfg, ctx["resolved"], ctx["data"].num_classes)
    t0 = time.perf_counter()
    distill(bank, ctx["data"], ctx["pre"], cfg.train, out, ctx["device"], ctx["targets"], show_progress=False)
    seconds = time.perf_counter() - t0
    test = ctx["data"].test
    widths = {}
    for w in bank.width_choices:
        recalibrate_bn(bank, ctx["calib"], config=(w,) * bank.num_stages)
        widths[str(w)] = accuracy(bank, test.images, test.labels, ctx["pre"], ctx["device"], cfg.train.eval_batch)
    return widths, seconds


def run(args: argparse.Namespace, on_row: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    base_cfg, base = load_task(args.task)
    if args.steps:
        base_cfg = base_cfg.model_copy(update={"train": base_cfg.train.model_copy(update={"steps": args.steps})})
    resolved = ed.load_budget(args.budget)
    device = resolve_device(args.device)
    work = REPO / "runs" / "bank-quality"
    rows: list[dict[str, Any]] = []
    # One data split (the task's data.seed) and one teacher cache; the seeds vary initialisation and sampling.
    data = build_task_data(base_cfg.data, base)
    pre = preprocess_for(resolved, data)
    distiller = DISTILLERS.get(base_cfg.train.distiller)
    targets = None
    if distiller.uses_teachers:
        ms = base_cfg.train.multisource
        pseudo = str(ms.pseudo_labels or getattr(distiller, "pseudo_labels", "head"))
        sources = [t.source for t in base_cfg.teachers]
        weigh = functools.partial(distiller.weigh, cfg=base_cfg.train)
        targets, _ = prepare_teachers(sources, data, ms, weigh, pseudo, work / "teachers", device, base)
    calib = calibration_batches(data, pre, base_cfg.train.bn_calibration_images, device)
    ctx = {"resolved": resolved, "data": data, "pre": pre, "device": device, "targets": targets, "calib": calib}
    for seed in args.seeds:
        jobs: list[tuple[str, TaskConfig, float | None]] = [
            (name, _variant(base_cfg, seed, bank), None) for name, bank in BANKS.items() if name in args.variants
        ]
        if "alone" in args.variants:
            widths = sorted(base_cfg.student.width_choices, reverse=True)
            jobs += [("alone", _variant(base_cfg, seed, {"loss": "inplace", "tri_head": False}, w), w) for w in widths]
        for name, vcfg, width in jobs:
            out = work / f"{name}{'' if width is None else f'-{width}'}-s{seed}"
            acc, seconds = _train_and_eval(vcfg, ctx, out)
            rows.append({"variant": name, "seed": seed, "width_accuracy": acc, "train_seconds": round(seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
            on_row(rows)
    return rows


def _table(rows: list[dict[str, Any]], widths: list[str]) -> list[str]:
    lines = [
        "| variant | seeds | " + " | ".join(f"width {w}" for w in widths) + " | train s (mean) |",
        "|---|---|" + "---|" * len(widths) + "---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        seeds = sorted({r["seed"] for r in group})
        cells = []
        for w in widths:
            vals = [r["width_accuracy"][w] for r in group if w in r["width_accuracy"]]
            cells.append(_mean_std(vals) if vals else "-")
        per_seed = [sum(r["train_seconds"] for r in group if r["seed"] == s) for s in seeds]
        lines.append(f"| {variant} | {len(seeds)} | " + " | ".join(cells) + f" | {statistics.mean(per_seed):.0f} |")
    return lines


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _markdown(rows: list[dict[str, Any]], command: str, machine: dict[str, Any], task: str) -> str:
    widths = sorted({w for r in rows for w in r["width_accuracy"]}, key=float, reverse=True)
    lines = [
        "# Bank training ablation: in-place KD vs SEED vs SEED+OSTC (MNIST demo task)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} usable cores, {machine.get('platform')}, "
        f"torch {torch.__version__}, {machine.get('torch_threads')} threads  ",
        f"Task: {task}",
        "",
        *_table(rows, widths),
        "",
        "Test top-1 % (10,000 MNIST test images) of the deployed head at each uniform width after BN "
        "recalibration (2000 unlabeled images), mean ± std over training seeds (one data split: the task's). "
        "`alone`: a separate net per width, trained with the same distiller, steps and batches "
        "(one net per step, no bank loss); train s: per seed, summed over its widths.",
        "",
        "| variant | seed | " + " | ".join(widths) + " |",
        "|---|---|" + "---|" * len(widths),
    ]
    for r in rows:
        cells = [f"{r['width_accuracy'][w]:.2f}" if w in r["width_accuracy"] else "" for w in widths]
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=None, help="task YAML (default: the embedded demo task)")
    p.add_argument("--budget", type=Path, default=REPO / "budgets" / "demo-cpu.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (data split: the task's)")
    p.add_argument("--variants", nargs="+", default=[*BANKS, "alone"], choices=[*BANKS, "alone"])
    p.add_argument("--steps", type=int, default=None, help="override the task's train.steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge these result JSONs into --out (a later file's row replaces one with the same variant, seed "
        "and width)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bank_quality")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    command = "python bench/bank_quality.py " + " ".join(sys.argv[1:])
    machine = machine_info() | {"torch_threads": torch.get_num_threads()}
    task = str(args.task or "embedded demo-mnist")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict[str, Any]]) -> None:  # after every run, so an interrupted benchmark keeps its rows
        payload = {"command": command, "machine": machine, "task": task, "seconds": round(time.perf_counter() - t0)}
        atomic_write_json(args.out.with_suffix(".json"), payload | {"rows": rows})
        atomic_write_text(args.out.with_suffix(".md"), _markdown(rows, command, machine, task))

    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        command = "; ".join(part["command"] for part in parts)
        machine = parts[-1]["machine"]
        rows = {(r["variant"], r["seed"], *r["width_accuracy"]): r for part in parts for r in part["rows"]}
        write(list(rows.values()))
    else:
        run(args, write)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
