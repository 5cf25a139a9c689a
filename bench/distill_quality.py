"""Distillation quality benchmark (issue 4): does multi-source distillation beat the labels and the baselines?

For every task × labels-per-class × seed it trains the same student with every method on the same split, budget
and step count, and reports test top-1 (mean ± std over seeds):
    ce-only            the labeled split alone
    fixmatch           FixMatch, the semi-supervised baseline (labels + confident pseudo-labels, weak/strong views)
    finetune           the best teacher by task similarity, new target head, fine-tuned on the labeled split
    distill-nearest    KD + feature regression from the most similar teacher (Borup et al.)
    distill-weighted   KD + feature regression from the top-k teachers, α = softmax(score / γ) (Borup et al.)
It also scores every teacher with every similarity metric on the labeled split, measures each teacher's actual
transfer accuracy (a linear probe on its frozen features, fit on the labeled split, tested on the test split) and
reports Spearman ρ between each metric's ranking and the transfer accuracies; and, with --cost, the training time
per epoch of the unlabeled pool: cached teachers vs plain CE on the same batch vs running the teachers online.

    python bench/distill_quality.py [--tasks demo tasks/optdigits.yaml] [--labels 5 10] [--seeds 0 1 2]
        [--methods ce-only fixmatch finetune distill-nearest distill-weighted] [--steps 300] [--num-sampled 1]
        [--cost] [--out bench/results/distill_quality]

`--num-sampled 1` trains the full-width student only (the methods are compared on one net, 3x cheaper than the
sandwich bank); pass 3 to train and report the bank as `make demo` does.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from scipy.stats import spearmanr

import edgedistill as ed
from edgedistill.data import build_task_data
from edgedistill.distill.config import MultiSourceConfig
from edgedistill.distill.distillers import DISTILLERS
from edgedistill.distill.multisource import PSEUDO_LABELS
from edgedistill.task import load_task
from edgedistill.teachers import load_teacher
from edgedistill.teachers.cache import cache_teachers
from edgedistill.teachers.similarity import similarity_scores

REPO = Path(__file__).resolve().parents[1]

METRICS = ["knn", "linear", "logme", "leep"]
WORK = REPO / "runs" / "distill-quality"
CACHE = WORK / "teacher-cache"  # shared by every run: entries are keyed by teacher, images and preprocessing


def task_file(task: Path | None, seed: int, labels: int, num_sampled: int) -> Path:
    """The task with data.seed, data.labels_per_class, train.seed and train.num_sampled replaced; with
    num_sampled 1 the student is the bank's full width alone (width_choices [1.0])."""
    cfg, base = load_task(task)
    data = cfg.data.model_copy(update={"seed": seed, "labels_per_class": labels})
    if getattr(data, "root", None):
        data = data.model_copy(update={"root": str((base / data.root).resolve())})
    train = cfg.train.model_copy(update={"seed": seed, "num_sampled": num_sampled})
    student = cfg.student.model_copy(update={"width_choices": [1.0]}) if num_sampled == 1 else cfg.student
    cfg = cfg.model_copy(update={"data": data, "train": train, "student": student})
    path = WORK / f"{cfg.name}-s{seed}-l{labels}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def run_method(method: str, budget: Path, task: Path, seed: int, steps: int | None, device: str) -> dict[str, Any]:
    """Test top-1 of one method (full-width student, or the fine-tuned teacher)."""
    if method == "finetune":
        r = ed.finetune_teacher(task, "best", steps=steps, seed=seed, device=device, cache=CACHE)
        return {"accuracy": r.test_accuracy, "seconds": r.seconds, "teacher": r.source}
    out = WORK / "runs" / f"{task.stem}-{method}"
    s = ed.train(budget, task, out, device=device, overwrite=True, steps=steps, distiller=method, teacher_cache=CACHE)
    row: dict[str, Any] = {"accuracy": s.width_accuracy[max(s.width_accuracy, key=float)], "seconds": s.train_seconds}
    if s.teachers:
        row["alphas"] = {t.source: t.alpha for t in s.teachers}
    return row


def teacher_transfer(task: Path, transfer_test: int, device: str) -> dict[str, Any]:
    """Every teacher's similarity scores (labeled split) and linear-probe transfer accuracy (test split)."""
    cfg, base = load_task(task)
    data = build_task_data(cfg.data, base)
    test = data.test.subset(np.arange(min(transfer_test, len(data.test))))
    sources = [t.source for t in cfg.teachers]
    cached = cache_teachers(sources, {"labeled": data.labeled, "test": test}, CACHE, device, base, False)
    labels = data.labeled.labels
    assert labels is not None and test.labels is not None
    scores = {m: similarity_scores(cached, labels, m) for m in METRICS}
    probe = PSEUDO_LABELS.get("head")
    transfer = [
        float(
            (probe(c, labels, data.num_classes, MultiSourceConfig(), ("test",))[0].argmax(1) == test.labels).mean()
            * 100
        )
        for c in cached
    ]
    alphas = DISTILLERS.get("distill-weighted").weigh(np.asarray(scores[cfg.train.multisource.similarity]), cfg.train)
    rho = {m: float(spearmanr(scores[m], transfer).statistic) for m in METRICS}
    return {
        "teachers": [
            {"source": s, "transfer": round(transfer[i], 2), "alpha": round(float(alphas[i]), 3)}
            | {m: round(scores[m][i], 4) for m in METRICS}
            for i, s in enumerate(sources)
        ],
        "spearman": rho,
        "transfer_test_images": len(test),
    }


def online_teacher_seconds(images: np.ndarray, active: list[str], base: Path, device: str, repeats: int = 5) -> float:
    """Seconds per step to run the `active` teachers (those with α > 0) on one batch of uint8 `images`."""
    x = torch.from_numpy(images).to(device)
    teachers = [load_teacher(s, device, base) for s in active]
    for t in teachers:
        t.predict(x)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        for t in teachers:
            t.predict(x)
    return (time.perf_counter() - t0) / repeats


def cost(budget: Path, task: Path, steps: int, device: str) -> dict[str, Any]:
    """Time per epoch of the unlabeled pool (batch_unlabeled images per step): distill-weighted reading the cache,
    plain CE on a labeled batch of the same size (labeled + unlabeled images per step), and the cached step plus
    running the active teachers on every batch (online)."""
    cfg, base = load_task(task)
    tr = cfg.train
    unlabeled = build_task_data(cfg.data, base).unlabeled.images
    steps_per_epoch = len(unlabeled) / tr.batch_unlabeled
    secs, active = {}, []
    for name, updates in {
        "distill-weighted (cache)": {"distiller": "distill-weighted"},
        "ce-only (same batch)": {"distiller": "ce-only", "batch_labeled": tr.batch_labeled + tr.batch_unlabeled},
    }.items():
        t = cfg.model_copy(
            update={"train": tr.model_copy(update=updates | {"steps": steps, "checkpoint_every": 10**6})}
        )
        path = WORK / f"cost-{name.split()[0]}.yaml"
        path.write_text(yaml.safe_dump(t.model_dump(mode="json"), sort_keys=False))
        s = ed.train(budget, path, WORK / "runs" / path.stem, device=device, overwrite=True, teacher_cache=CACHE)
        secs[name] = s.train_seconds / steps
        active += [t.source for t in s.teachers if t.alpha > 0]
    secs["distill-weighted (online teachers)"] = secs["distill-weighted (cache)"] + online_teacher_seconds(
        unlabeled[: tr.batch_unlabeled], active, base, device
    )
    base = secs["ce-only (same batch)"]
    return {
        "task": cfg.name,
        "steps_timed": steps,
        "steps_per_epoch": round(steps_per_epoch, 1),
        "seconds_per_epoch": {k: round(v * steps_per_epoch, 1) for k, v in secs.items()},
        "ratio_vs_ce": {k: round(v / base, 2) for k, v in secs.items()},
    }


def free_budget(budget: Path, input_size: int | None) -> Path:
    """`budget` without MAC, parameter and latency limits, so that the full-width student is always the chosen net
    (and the search never times it); the student's input resized to `input_size` when given."""
    spec = yaml.safe_load(budget.read_text())
    spec["limits"] = {k: v for k, v in spec.get("limits", {}).items() if k not in {"macs_m", "params_m", "latency_ms"}}
    if input_size:
        spec["input"] |= {"height": input_size, "width": input_size}
    spec["target"]["recipe"] = str((budget.parent / spec["target"]["recipe"]).resolve())
    path = WORK / f"{budget.stem}-no-size-limits-{input_size or 'same'}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run(args: argparse.Namespace, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The grid, labels outermost (the first `--labels` value is complete for every task first); `save` is called
    with the partial results after every row."""
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "runs").mkdir(exist_ok=True)
    if args.num_sampled == 1:
        args.budget = free_budget(args.budget, args.input_size)
    res: dict[str, Any] = {"rows": [], "transfer": [], "cost": []}
    rows, transfer, costs = res["rows"], res["transfer"], res["cost"]
    tasks = [(None if str(t) == "demo" else t) for t in args.tasks]
    for labels in args.labels if args.methods else []:  # `--methods` with no names: only the cost
        for task_path in tasks:
            for seed in args.seeds:
                tf = task_file(task_path, seed, labels, args.num_sampled)
                name = load_task(tf)[0].name
                tt = teacher_transfer(tf, args.transfer_test, args.device)
                transfer.append({"task": name, "labels_per_class": labels, "seed": seed} | tt)
                print(json.dumps(transfer[-1]["spearman"] | {"task": name, "labels": labels, "seed": seed}), flush=True)
                for method in args.methods:
                    r = run_method(method, args.budget, tf, seed, args.steps, args.device)
                    rows.append({"task": name, "labels_per_class": labels, "seed": seed, "method": method} | r)
                    print(json.dumps(rows[-1]), flush=True)
                    save(res)
    for task_path in tasks if args.cost else []:
        tf = task_file(task_path, args.seeds[0], args.labels[0], args.num_sampled)
        costs.append(cost(args.budget, tf, args.cost_steps, args.device))
        print(json.dumps(costs[-1]), flush=True)
        save(res)
    return res


def merged(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of several result files, one per (task, labels, seed, method): a later file's entry replaces an
    earlier one (a rerun replaces a partial or older run)."""
    keyed = {tuple(e.get(k) for k in ("task", "labels_per_class", "seed", "method", "steps_timed")): e for e in entries}
    return list(keyed.values())


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(res: dict[str, Any], command: str, machine: str) -> str:
    rows, methods = res["rows"], list(dict.fromkeys(r["method"] for r in res["rows"]))
    lines = [
        "# Distillation quality (issue 4)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}",
        "",
        "Test top-1 % (mean ± std over seeds; full-width student for the trained methods, the fine-tuned teacher for "
        "`finetune`).",
        "",
        "| task | labels/class | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for task, labels in dict.fromkeys((r["task"], r["labels_per_class"]) for r in rows):
        cells = []
        for m in methods:
            vals = [r["accuracy"] for r in rows if (r["task"], r["labels_per_class"], r["method"]) == (task, labels, m)]
            cells.append(_mean_std(vals) if vals else "-")
        lines.append(f"| {task} | {labels} | " + " | ".join(cells) + " |")
    lines += ["", "## Teachers: similarity, weight α, transfer accuracy (linear probe), Spearman ρ", ""]
    for task, labels in dict.fromkeys((t["task"], t["labels_per_class"]) for t in res["transfer"]):
        group = [t for t in res["transfer"] if (t["task"], t["labels_per_class"]) == (task, labels)]
        rho = {
            m: _mean_std([g["spearman"][m] for g in group if not np.isnan(g["spearman"][m])] or [float("nan")])
            for m in METRICS
        }
        lines += [
            f"**{task}, {labels} labels/class** ({len(group)} seeds, transfer tested on "
            f"{group[0]['transfer_test_images']} test images). Spearman ρ(metric, transfer): "
            + ", ".join(f"{m} {v}" for m, v in rho.items()),
            "",
            "| teacher | " + " | ".join(METRICS) + " | α (distill-weighted) | transfer % |",
            "|---|" + "---|" * (len(METRICS) + 2),
        ]
        for i, t in enumerate(group[0]["teachers"]):
            cells = [_mean_std([g["teachers"][i][m] for g in group]) for m in [*METRICS, "alpha", "transfer"]]
            lines.append(f"| `{t['source']}` | " + " | ".join(cells) + " |")
        lines.append("")
    if res["cost"]:
        lines += ["## Cost: seconds per epoch of the unlabeled pool (ratio to plain CE on the same batch)", ""]
        lines += ["| task | steps/epoch | " + " | ".join(res["cost"][0]["seconds_per_epoch"]) + " |"]
        lines += ["|---|---|" + "---|" * len(res["cost"][0]["seconds_per_epoch"])]
        for c in res["cost"]:
            cells = [f"{v} ({c['ratio_vs_ce'][k]}×)" for k, v in c["seconds_per_epoch"].items()]
            lines.append(f"| {c['task']} | {c['steps_per_epoch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tasks",
        type=Path,
        nargs="+",
        default=[Path("demo"), REPO / "tasks" / "optdigits.yaml"],
        help="task YAMLs ('demo' = the embedded MNIST demo task)",
    )
    p.add_argument("--budget", type=Path, default=REPO / "budgets" / "demo-cpu.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--labels", type=int, nargs="+", default=[10, 5], help="labels per class")
    p.add_argument(
        "--methods", nargs="*", default=["ce-only", "fixmatch", "finetune", "distill-nearest", "distill-weighted"]
    )
    p.add_argument("--steps", type=int, default=None, help="default: the task's train.steps")
    p.add_argument("--num-sampled", type=int, default=1, help="widths per step (1 = full-width student only)")
    p.add_argument("--transfer-test", type=int, default=1000, help="test images for the teachers' transfer accuracy")
    p.add_argument("--cost", action="store_true", help="also time an epoch: cache vs plain CE vs online teachers")
    p.add_argument("--cost-steps", type=int, default=40)
    p.add_argument("--input-size", type=int, default=None, help="student input side (default: the budget's)")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="only merge these result JSONs into --out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (1: two benchmarks side by side)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "distill_quality")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    command = "python bench/distill_quality.py " + " ".join(sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(res: dict[str, Any]) -> None:
        args.out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine} | res, indent=1))
        args.out.with_suffix(".md").write_text(markdown(res, command, machine))

    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        res = {k: merged([x for part in parts for x in part[k]]) for k in ("rows", "transfer", "cost")}
        command = "; ".join(part["command"] for part in parts)
        machine = "; ".join(dict.fromkeys(part["machine"] for part in parts))
        save(res)
    else:
        res = run(args, save)
    print(markdown(res, command, machine))


if __name__ == "__main__":
    main()
