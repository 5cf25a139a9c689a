"""Distillation quality benchmark (issue 4): CE-only vs DistillNearest vs DistillWeighted on a task.

For each seed and labels-per-class setting, trains the task's student with every distiller (same budget,
steps and data split) and reports the full-width and chosen-subnet test accuracy, mean ± std over seeds,
plus the teachers' similarity scores, weights α and the accuracy of their target-class pseudo-labels.

    python bench/distill_quality.py [--task tasks/demo-mnist.yaml] [--seeds 0 1 2] [--labels 10]
        [--distillers ce-only distill-nearest distill-weighted] [--steps N] [--out bench/results/distill_quality]

Not yet here (later work): fine-tune-a-teacher and FixMatch baselines, Spearman of the ranking vs transfer
accuracy, time per epoch with the cache vs plain CE vs online teachers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedistill.pipeline.train import train_run  # noqa: E402
from edgedistill.task import load_task  # noqa: E402


def _task_file(task: Path | None, seed: int, labels: int, work: Path) -> Path:
    """The task with `data.seed` and `data.labels_per_class` (and the train seed) replaced."""
    cfg, base = load_task(task)
    data = cfg.data.model_copy(update={"seed": seed, "labels_per_class": labels})
    if getattr(data, "root", None):
        data = data.model_copy(update={"root": str((base / data.root).resolve())})
    cfg = cfg.model_copy(update={"data": data, "train": cfg.train.model_copy(update={"seed": seed})})
    path = work / f"task-s{seed}-l{labels}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    work = REPO / "runs" / "distill-quality"
    work.mkdir(parents=True, exist_ok=True)
    for labels in args.labels:
        for seed in args.seeds:
            task = _task_file(args.task, seed, labels, work)
            for distiller in args.distillers:
                out = work / f"{distiller}-s{seed}-l{labels}"
                s = train_run(
                    args.budget,
                    task,
                    out,
                    device=args.device,
                    overwrite=True,
                    steps=args.steps,
                    distiller=distiller,
                    show_progress=False,
                )
                rows.append(
                    {
                        "distiller": distiller,
                        "seed": seed,
                        "labels_per_class": labels,
                        "full_width": s["width_accuracy"][max(s["width_accuracy"], key=float)],
                        "chosen": s["chosen"]["test_accuracy"],
                        "train_seconds": s["train_seconds"],
                        "teachers": s["teachers"],
                    }
                )
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "teachers"}), flush=True)
    return rows


def _markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# Distillation quality",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.platform()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        "| labels/class | distiller | seeds | full width top-1 % | chosen subnet top-1 % | train s |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["labels_per_class"], r["distiller"]) for r in rows})
    for labels, distiller in keys:
        group = [r for r in rows if (r["labels_per_class"], r["distiller"]) == (labels, distiller)]
        cells = [_mean_std([r[k] for r in group]) for k in ("full_width", "chosen")]
        secs = statistics.mean(r["train_seconds"] for r in group)
        lines.append(f"| {labels} | {distiller} | {len(group)} | {cells[0]} | {cells[1]} | {secs:.0f} |")
    teacher_rows = next((r["teachers"] for r in reversed(rows) if r["teachers"]), [])  # last: distill-weighted
    if teacher_rows:
        lines += ["", "| teacher | score | α | pseudo-label test % |", "|---|---|---|---|"]
        for t in teacher_rows:
            acc = "-" if t["test_accuracy"] is None else f"{t['test_accuracy']:.2f}"
            lines.append(f"| `{t['source']}` | {t['score']:.4f} | {t['alpha']:.3f} | {acc} |")
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=None, help="task YAML (default: the embedded demo task)")
    p.add_argument("--budget", type=Path, default=REPO / "budgets" / "demo-cpu.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--labels", type=int, nargs="+", default=[10], help="labels per class")
    p.add_argument("--distillers", nargs="+", default=["ce-only", "distill-nearest", "distill-weighted"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "distill_quality")
    args = p.parse_args()
    rows = run(args)
    command = "python bench/distill_quality.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(rows, command))
    print(_markdown(rows, command))


if __name__ == "__main__":
    main()
