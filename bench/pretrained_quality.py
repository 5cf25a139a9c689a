"""Pretrained vs scratch slimmable banks at equal MACs (MNIST, optdigits; 64 px RGB, 10 labels per class).

For every task, seed and variant, one run goes through the command line, each step in its own process:

    edgedistill train --budget B --task runs/pretrained-quality/tasks/T-V-sS.yaml --out RUN --teacher-cache C
    edgedistill export --run RUN --int8
    edgedistill bench --run RUN --no-reference

Variants (the same recipe: steps, batches, lr, in-place KD bank loss, BN recalibration, search; only these differ):

- `scratch-ce`, `scratch-distill-weighted`: the randomly initialised `mobilenet` bank, trained with sandwich
  sampling (3 widths per step) on the labels alone (`ce-only`) or distilled from the ranked teachers.
- `pretrained-ce`, `pretrained-distill-weighted`: the ImageNet EfficientNet-Lite0 bank (family `timm`, packaged
  weights, pretrained layers at `train.pretrained_lr_scale` 0.1), the same two distillers.
- `transfer`: the ImageNet-init transfer baseline (Borup et al.): the pretrained Lite0 fine-tuned alone at full
  width (`num_sampled: 1` trains only the largest config) on the labels, then slimmed afterwards: BN recalibrated
  per width and the same width search for the budget, both run by `train` as for the banks.

The seed draws the 10 labels per class (`data.seed`) and the initialisation and sampling (`train.seed`). The budget
(`budgets/x86-2core-onnxruntime-64.yaml`) caps MACs below the full scratch bank and above the smallest Lite0 subnet,
so the search narrows both banks to subnets of nearly equal MACs. Task files go to `runs/` (never `tasks/`).

    python bench/pretrained_quality.py [--seeds 0 1 2] [--tasks mnist optdigits] [--variants ...] [--steps N]
        [--work runs/pretrained-quality] [--out bench/results/pretrained_quality]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BUDGET = "budgets/x86-2core-onnxruntime-64.yaml"
WORK = Path("runs") / "pretrained-quality"
LITE0 = {"model": "tf_efficientnet_lite0", "weights": "packaged:efficientnet_lite0"}
WIDTHS = [0.25, 0.5, 0.75, 1.0]


@dataclass(frozen=True)
class Variant:
    """One student + training recipe: what differs between the compared runs."""

    family: str
    distiller: str
    options: dict[str, str] = field(default_factory=dict)
    num_sampled: int = 3
    about: str = ""


VARIANTS: dict[str, Variant] = {
    "scratch-ce": Variant("mobilenet", "ce-only", about="scratch mobilenet bank, labels only"),
    "scratch-distill-weighted": Variant("mobilenet", "distill-weighted", about="scratch mobilenet bank, distilled"),
    "pretrained-ce": Variant("timm", "ce-only", LITE0, about="pretrained Lite0 bank, labels only"),
    "pretrained-distill-weighted": Variant("timm", "distill-weighted", LITE0, about="pretrained Lite0 bank, distilled"),
    "transfer": Variant("timm", "ce-only", LITE0, num_sampled=1, about="Lite0 fine-tuned at full width, then slimmed"),
}

# The target data and teacher pools of tasks/demo-mnist.yaml and tasks/optdigits.yaml. MNIST is tested on 2,000 of
# the 10,000 test images (95% interval about ±1 pt at 95% top-1) to keep each run near 3 minutes on 2 cores.
TASKS: dict[str, dict[str, Any]] = {
    "mnist": {
        "data": {"source": "mnist", "labels_per_class": 10, "unlabeled": 10000, "test": 2000},
        "teachers": ["ccexam:usps?crop=0.72", "ccexam:svhn?invert=1", "packaged:efficientnet_lite0"],
    },
    "optdigits": {
        "data": {"source": "optdigits", "labels_per_class": 10},
        "teachers": ["ccexam:mnist?box=20", "ccexam:usps?box=12", "ccexam:svhn?box=24", "packaged:efficientnet_lite0"],
    },
}

# The shared recipe (sized so one run, train + export + bench, takes about 3 minutes on 2 cores at --steps 100).
RECIPE: dict[str, Any] = {
    "multisource": {"similarity": "knn", "gamma": 0.1, "top_k": 2},
    "bank": {"loss": "inplace"},
    "warmup_steps": 10,
    "batch_labeled": 32,
    "batch_unlabeled": 96,
    "lr": 3.0e-3,
    "pretrained_lr_scale": 0.1,
    "channels_last": True,
    "bn_calibration_images": 500,
    "eval_batch": 200,
}
DEFAULT_STEPS = 100


@dataclass(frozen=True)
class Job:
    """One run of the protocol."""

    task: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.variant}-s{self.seed}"


def plan(tasks: list[str], variants: list[str], seeds: list[int]) -> list[Job]:
    """Every (task, seed, variant) run, seed-major so an interrupted benchmark has whole seeds."""
    return [Job(t, v, s) for t in tasks for s in seeds for v in variants]


def task_config(job: Job, steps: int) -> dict[str, Any]:
    """The task file of one run (a plain dict, written as YAML and validated by `train`)."""
    spec, variant = TASKS[job.task], VARIANTS[job.variant]
    student: dict[str, Any] = {"family": variant.family, "width_choices": WIDTHS, "divisor": 8}
    if variant.options:
        student["options"] = dict(variant.options)
    train = RECIPE | {"distiller": variant.distiller, "steps": steps, "num_sampled": variant.num_sampled}
    return {
        "name": job.name,
        "data": spec["data"] | {"seed": job.seed},
        "teachers": [{"source": s} for s in spec["teachers"]],
        "student": student,
        "train": train | {"seed": job.seed},
    }


def _cli(*args: str) -> tuple[float, str | None]:
    """Run one edgedistill command; (seconds, its one-line error or None)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    sys.stdout.write(proc.stdout[-2000:])
    if proc.returncode == 0:
        return seconds, None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return seconds, (lines[-1] if lines else f"exit code {proc.returncode}")


def run_job(job: Job, steps: int, budget: str, work: Path = WORK) -> dict[str, Any]:
    """Train, export and bench one run through the command line (run folders under `work`), then collect its row."""
    run = work / job.name
    task = REPO / work / "tasks" / f"{job.name}.yaml"
    task.parent.mkdir(parents=True, exist_ok=True)
    task.write_text(yaml.safe_dump(task_config(job, steps), sort_keys=False))
    cache = str(work / "teachers")  # one teacher cache for every run (keyed by teacher, images, preprocessing)
    stage_s: dict[str, float] = {}
    errors: dict[str, str] = {}
    common = ["--run", str(run)]  # export and bench take the run's own budget and its search's choice
    steps_cmds: list[tuple[str, list[str]]] = [
        ("train", ["train", "--budget", budget, "--task", str(task), "--out", str(run), "--teacher-cache", cache]),
        ("export", ["export", *common, "--int8"]),
        ("bench", ["bench", *common, "--no-reference"]),
    ]
    for stage, args in steps_cmds:
        extra = ["--overwrite", "--no-progress"] if stage == "train" else []
        seconds, error = _cli(*args, *extra)
        stage_s[stage] = round(seconds, 1)
        if error:
            errors[stage] = error
            # A too-large INT8 drop fails export after its manifest is written: still bench and report it.
            if stage == "train" or not (REPO / run / "export" / "onnxruntime-int8" / "manifest.json").is_file():
                break
    row = {"task": job.task, "variant": job.variant, "seed": job.seed, "wall_seconds": stage_s, "errors": errors}
    # A failed train may leave an older run's files in place (it deletes the folder only once its inputs check out).
    return row if "train" in errors else row | collect(REPO / run)


def collect(run: Path) -> dict[str, Any]:
    """What one run folder records: width top-1, the chosen subnet, INT8 drop, INT8 latency, train seconds."""
    out: dict[str, Any] = {}
    train_json = run / "train.json"
    if train_json.is_file():
        t = json.loads(train_json.read_text())
        chosen = t["chosen"]
        out |= {
            "steps": t["steps"],
            "family": t["family"],
            "train_seconds": t["train_seconds"],
            "stage_seconds": t.get("stage_seconds", {}),
            "width_accuracy": t["width_accuracy"],
            "chosen": {k: chosen.get(k) for k in ("config", "macs", "params", "upem", "test_accuracy")},
            "search": t.get("search", {}),
            "teachers": [{k: x.get(k) for k in ("source", "score", "alpha")} for x in t.get("teachers", [])],
        }
    art = run / "export" / "onnxruntime-int8"
    if (art / "manifest.json").is_file():
        acc = json.loads((art / "manifest.json").read_text())["accuracy"]
        out |= {"fp32_top1": acc["fp32"], "int8_top1": acc["artifact"], "int8_drop_pts": acc["drop_pts"]}
    if (art / "bench.json").is_file():
        b = json.loads((art / "bench.json").read_text())
        (r,) = [r for r in b["results"] if r["precision"] == "int8"]
        out |= {
            "latency_ms": {s: r["stats"][s] for s in ("p50", "p90", "p99")},
            "threads": r["threads"],
            "verdict": b["verdict"],
            "bench_machine": r["machine"],
        }
    return out


def mean_std(values: list[float], digits: int = 2) -> str:
    """`m ± s` over seeds (sample std); one value alone; `-` for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _values(group: list[dict[str, Any]], get: Any) -> list[float]:
    out = []
    for r in group:
        try:
            out.append(float(get(r)))
        except (KeyError, TypeError):
            continue
    return out


def summary_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (task, variant): mean ± std over seeds of every width, the subnet, INT8 and latency."""
    widths = [str(w) for w in sorted(WIDTHS, reverse=True)]
    head = (
        "| task | variant | seeds | "
        + " | ".join(f"width {w}" for w in widths)
        + " | subnet MACs M | subnet FP32 top-1 | INT8 top-1 | INT8 drop pts | INT8 p50 ms | INT8 p90 ms | train s |"
    )
    lines = [head, "|---|---|---|" + "---|" * len(widths) + "---|---|---|---|---|---|---|"]
    for task, variant in dict.fromkeys((r["task"], r["variant"]) for r in rows):
        g = [r for r in rows if r["task"] == task and r["variant"] == variant]
        cells = [mean_std(_values(g, lambda r, w=w: r["width_accuracy"][w])) for w in widths]
        cells += [
            mean_std(_values(g, lambda r: r["chosen"]["macs"] / 1e6)),
            mean_std(_values(g, lambda r: r["fp32_top1"])),
            mean_std(_values(g, lambda r: r["int8_top1"])),
            mean_std(_values(g, lambda r: r["int8_drop_pts"])),
            mean_std(_values(g, lambda r: r["latency_ms"]["p50"]), 3),
            mean_std(_values(g, lambda r: r["latency_ms"]["p90"]), 3),
            mean_std(_values(g, lambda r: r["train_seconds"]), 0),
        ]
        lines.append(f"| {task} | {variant} | {len({r['seed'] for r in g})} | " + " | ".join(cells) + " |")
    return lines


def verdict(rows: list[dict[str, Any]], task: str) -> str | None:
    """Pretrained vs scratch bank, both distill-weighted, on the deployed subnet (INT8 top-1, mean over seeds)."""

    def mean(variant: str, key: str) -> tuple[float, float] | None:
        g = [r for r in rows if r["task"] == task and r["variant"] == variant]
        acc, macs = _values(g, lambda r: r[key]), _values(g, lambda r: r["chosen"]["macs"] / 1e6)
        return (statistics.mean(acc), statistics.mean(macs)) if acc and macs else None

    p, s = mean("pretrained-distill-weighted", "int8_top1"), mean("scratch-distill-weighted", "int8_top1")
    if p is None or s is None:
        return None
    word = "beats" if p[0] > s[0] else "does not beat"
    return (
        f"{task}: the pretrained bank with distill-weighted {word} the scratch bank with distill-weighted on the "
        f"deployed INT8 subnet: {p[0]:.2f}% at {p[1]:.2f} M MACs vs {s[0]:.2f}% at {s[1]:.2f} M MACs "
        f"({p[0] - s[0]:+.2f} pts)."
    )


def markdown(rows: list[dict[str, Any]], command: str, machine: dict[str, Any], steps: int) -> str:
    """The results page: command, machine, protocol, the mean ± std table, the verdicts and every run."""
    lines = [
        "# Pretrained vs scratch slimmable banks at equal MACs (64 px RGB, 10 labels per class)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} usable cores, {machine.get('platform')}  ",
        f"Budget: `{BUDGET}` (ONNX Runtime INT8, 2 threads, batch 1, ≤ 14 M MACs)",
        "",
        "Protocol: per task, seed and variant one `train` → `export --int8` → `bench --no-reference` run. "
        f"{steps} steps of {RECIPE['batch_labeled']} labeled + {RECIPE['batch_unlabeled']} unlabeled images, "
        f"lr {RECIPE['lr']} (pretrained layers × {RECIPE['pretrained_lr_scale']}), {RECIPE['warmup_steps']} warm-up "
        "steps, in-place KD bank loss, 3 sampled widths per step (transfer: 1, the full width only), teachers ranked "
        "by kNN similarity and the top 2 weighted. The seed draws the labels and the initialisation. MNIST: 10,000 "
        "unlabeled pool images, tested on 2,000; optdigits: its 3,723 unlabeled and 1,797 test images.",
        "",
        *summary_table(rows),
        "",
        "Width columns: test top-1 % of the bank at that uniform width after BN recalibration (500 unlabeled images). "
        "Subnet: the config the search chose for the budget; FP32/INT8 top-1 of its exported artifact on the test "
        "split; latency: the INT8 artifact, batch 1, 2 threads. Mean ± std over seeds; train s: the training loop.",
        "",
    ]
    lines += [v for t in dict.fromkeys(r["task"] for r in rows) if (v := verdict(rows, t))]
    lines += [
        "",
        "| task | variant | seed | chosen config | MACs M | FP32 | INT8 | p50 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.get("chosen", {})
        macs = f"{c['macs'] / 1e6:.2f}" if c.get("macs") else "-"
        p50 = f"{r['latency_ms']['p50']:.3f}" if "latency_ms" in r else "-"
        fp32, int8 = (f"{r[k]:.2f}" if r.get(k) is not None else "-" for k in ("fp32_top1", "int8_top1"))
        errs = "; ".join(f"{k}: {v}" for k, v in r.get("errors", {}).items()).replace("|", "/")
        lines.append(
            f"| {r['task']} | {r['variant']} | {r['seed']} | {c.get('config', '-')} | {macs} "
            f"| {fp32} | {int8} | {p50} | {errs} |"
        )
    return "\n".join(lines) + "\n"


def merged_rows(path: Path, jobs: list[Job], steps: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and commands of an earlier results file, less the rows `jobs` redo (`--merge`: a benchmark in chunks).

    Raises:
        SystemExit: The earlier file used another number of steps (its rows would not compare).
    """
    if not path.is_file():
        return [], []
    old = json.loads(path.read_text())
    if old.get("steps") != steps:
        raise SystemExit(f"{path}: rows of {old.get('steps')} steps cannot be merged with --steps {steps}")
    redo = {(j.task, j.variant, j.seed) for j in jobs}
    rows = [r for r in old.get("rows", []) if (r["task"], r["variant"], r["seed"]) not in redo]
    return rows, list(old.get("commands", [old["command"]] if "command" in old else []))


def main() -> None:
    from edgedistill.bench.machine import machine_info
    from edgedistill.io import atomic_write_json, atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="train.steps of every run")
    p.add_argument("--budget", default=BUDGET)
    p.add_argument("--work", type=Path, default=WORK, help="folder of the run folders, task files, teacher cache")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pretrained_quality")
    p.add_argument("--merge", action="store_true", help="keep the rows of --out.json that this run does not redo")
    args = p.parse_args()
    command = "python bench/pretrained_quality.py " + " ".join(sys.argv[1:])
    machine = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = plan(args.tasks, args.variants, args.seeds)
    kept, commands = merged_rows(args.out.with_suffix(".json"), jobs, args.steps) if args.merge else ([], [])
    commands.append(command)
    rows: list[dict[str, Any]] = []
    for job in jobs:
        rows.append(run_job(job, args.steps, args.budget, args.work))
        print(json.dumps({k: rows[-1].get(k) for k in ("task", "variant", "seed", "int8_top1", "errors")}), flush=True)
        every = sorted([*kept, *rows], key=lambda r: (list(TASKS).index(r["task"]), r["seed"], r["variant"]))
        payload = {"commands": commands, "machine": machine, "steps": args.steps, "budget": args.budget}
        payload |= {"recipe": RECIPE, "seconds": round(time.perf_counter() - t0), "rows": every}
        # After every run, so an interrupted benchmark keeps its rows.
        atomic_write_json(args.out.with_suffix(".json"), payload)
        atomic_write_text(args.out.with_suffix(".md"), markdown(every, "; ".join(commands), machine, args.steps))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
