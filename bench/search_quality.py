"""Search quality across tasks (issue 20): does each UPEM + strategy pick the best config a budget allows?

For each bank (a trained run folder), every config of the width space (or a seeded sample of a big space) is
evaluated twice, BatchNorm recalibrated per config each time:
- as the search scores it: the outputs on the search's unlabeled scoring images (`edgedistill/pipeline/search.py`);
- as it ships: BN recalibrated on the calibration images the chosen subnet gets, then test top-1 (labels), and the
  outputs on the scoring images, on as many more unlabeled images and on the task's few labeled images (the UPEM
  study: BN noise, more scoring images, a labeled tie-breaker).
The outputs go to `<runs>/<bank>/search_quality.pt`; `bench/search_quality_report.py` computes every UPEM from them,
its Spearman ρ with test accuracy and the regret of each UPEM + strategy per budget, and writes the results.

Banks (trained here with `edgedistill train` on the demo budget, unless their run folder already has a bank):
    mnist-l1, mnist-l2, mnist-l5      tasks/demo-mnist.yaml with 1, 2, 5 labels per class
    optdigits-l2, optdigits-l5        tasks/optdigits.yaml with 2, 5 labels per class
    multidomain-l2                    tasks/mnist-multidomain.yaml with 2 labels per class
Any trained run folder joins with `--run` (e.g. `--run runs/flagship-224`, the pretrained 224-px bank).

Usage (one bank per call keeps each call short; then the report):
    python bench/search_quality.py --banks mnist-l1 [--runs runs/search-quality]
    python bench/search_quality.py --run runs/flagship-224 [--sample 256]
    python bench/search_quality_report.py [--runs runs/search-quality] [--out bench/results/search_quality]
"""

from __future__ import annotations

import argparse
import itertools
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import edgedistill as ed
from edgedistill.data import TaskData, build_task_data
from edgedistill.inputs import calibration_batches, pool_images, preprocess_for
from edgedistill.models import SlimmableBank
from edgedistill.pipeline.search import search_images, unlabeled_images
from edgedistill.run import RunDir, run_budget
from edgedistill.search import CostEstimator, CostInputs
from edgedistill.search.upem import ConfigOutputs, Outputs
from edgedistill.task import load_task

REPO = Path(__file__).resolve().parents[1]
BUDGET = "budgets/demo-cpu.yaml"
# name: (task, labels per class, task changes). Task similarity needs 2 labels per class: with 1, LEEP ranks.
BANKS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mnist-l1": ("tasks/demo-mnist.yaml", 1, {"train": {"multisource": {"similarity": "leep"}}}),
    "mnist-l2": ("tasks/demo-mnist.yaml", 2, {}),
    "mnist-l5": ("tasks/demo-mnist.yaml", 5, {}),
    "optdigits-l2": ("tasks/optdigits.yaml", 2, {}),
    "optdigits-l5": ("tasks/optdigits.yaml", 5, {}),
    "multidomain-l2": ("tasks/mnist-multidomain.yaml", 2, {}),
}
CACHE = "search_quality.pt"


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def train(name: str, runs: Path) -> Path:
    """Train bank `name` of `BANKS` into `runs/name` (skipped when it already holds a bank)."""
    task, labels, changes = BANKS[name]
    out = runs / name
    if RunDir(out).bank.is_file():
        return out
    spec = yaml.safe_load((REPO / task).read_text())
    spec = _merge(spec, {"name": f"{spec['name']}-l{labels}", "data": {"labels_per_class": labels}} | changes)
    task_file = runs / "tasks" / f"{name}.yaml"
    task_file.parent.mkdir(parents=True, exist_ok=True)
    task_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    cmd = ["train", "--task", str(task_file), "--budget", BUDGET, "--out", str(out), "--overwrite", "--no-progress"]
    cmd += ["--teacher-cache", str(runs / "teachers")]
    subprocess.run([sys.executable, "-m", "edgedistill", *cmd], cwd=REPO, check=True)
    return out


def _configs(bank: SlimmableBank, sample: int, seed: int) -> list[tuple[float, ...]]:
    """Every config of a space up to `sample` configs; else the uniform widths and a seeded sample of the rest."""
    space = [tuple(c) for c in itertools.product(bank.width_choices, repeat=bank.num_stages)]
    if len(space) <= sample:
        return space
    uniform = [(w,) * bank.num_stages for w in bank.width_choices]
    rest = [c for c in space if c not in uniform]
    return uniform + random.Random(seed).sample(rest, sample - len(uniform))


def _pool_images(data: TaskData, pre: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The search's images before issue 20: one seeded pool draw, BN on its first half, UPEM on the second."""
    n = min(search_images(pre), len(data.target_unlabeled))
    x = pool_images(data, pre, n, seed=3)
    return x[: n // 2], x[n // 2 :]


def _split(out: Outputs, sizes: list[int]) -> list[Outputs]:
    """`out` on concatenated image sets, cut back into one Outputs per set."""
    logits = out.logits.split(sizes)
    if out.heads is None:
        return [Outputs(lg) for lg in logits]
    cut = {k: h.split(sizes) for k, h in out.heads.items()}
    heads = [{k: v[i] for k, v in cut.items()} for i in range(len(sizes))]
    return [Outputs(lg, hd) for lg, hd in zip(logits, heads, strict=True)]


def evaluate(run: Path, sample: int, seed: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Outputs of every config (or a sample) as the search scores it and as it ships, with test top-1.

    `previous`: an earlier record of the same bank; only the search's outputs are computed again (the rest is kept).
    """
    rd = RunDir(run)
    bank = ed.load_bank(rd.bank).eval()
    task, base = load_task(rd.task)
    data = build_task_data(task.data, base)
    resolved = run_budget(rd, None)
    pre = preprocess_for(resolved, data)
    cpu, n_bn = torch.device("cpu"), task.train.bn_calibration_images
    images = unlabeled_images(data, pre, cpu, bn_images=n_bn)
    calib = torch.cat(calibration_batches(data, pre, n_bn, cpu))
    same_bn = len(images.bn) == len(calib)  # the search recalibrates BN exactly as the chosen subnet is
    shipped_sets = [images.eval] * same_bn
    if previous is None:
        shipped_sets += [pre(torch.from_numpy(data.test.images)), pre(torch.from_numpy(data.labeled.images))]
    shipped = ConfigOutputs(bank, calib, torch.cat(shipped_sets)) if shipped_sets else None
    search = None if same_bn else ConfigOutputs(bank, images.bn, images.eval)
    pool = ConfigOutputs(bank, *_pool_images(data, pre)) if previous is None else None
    estimate = CostEstimator(CostInputs(bank, resolved.budget.input.shape, None))
    configs = previous["configs"] if previous else _configs(bank, sample, seed)
    rows: dict[str, list[Any]] = {k: [] for k in ("search", "pool", "test", "labeled", "macs", "params")}
    start = time.perf_counter()
    for i, c in enumerate(configs):
        if shipped is not None:
            parts = _split(shipped(c), [len(x) for x in shipped_sets])
            shipped.seen.clear()  # outputs are kept here, not twice
            if same_bn:
                rows["search"].append(parts.pop(0))
            if previous is None:
                rows["test"].append(parts[0].logits.half())
                rows["labeled"].append(parts[1].logits)
        for name, outputs in (("search", search), ("pool", pool)):
            if outputs is not None:
                rows[name].append(outputs(c))
                outputs.seen.clear()
        costs = estimate(c)
        rows["macs"].append(costs.macs)
        rows["params"].append(costs.params)
        if i % 16 == 0:
            print(f"{run.name}: {i + 1}/{len(configs)} configs, {time.perf_counter() - start:.0f} s", flush=True)
    b = resolved.budget
    record = previous or {
        "name": run.name,
        "run": str(run),
        "task": task.name,
        "labels_per_class": task.data.labels_per_class,
        "classes": data.num_classes,
        "family": bank.family,
        "width_choices": list(bank.width_choices),
        "num_stages": bank.num_stages,
        "space": len(bank.width_choices) ** bank.num_stages,
        "configs": configs,
        "budget": {"name": b.name, "macs_m": b.limits.macs_m, "params_m": b.limits.params_m},
        "bn_calibration_images": n_bn,
        "test_labels": torch.from_numpy(data.test.labels),
        "labeled_labels": torch.from_numpy(data.labeled.labels),
        "test_logits": torch.stack(rows["test"]),
        "labeled_logits": torch.stack(rows["labeled"]),
        "outputs": {"pool": _stack(rows["pool"])},
        "macs": rows["macs"],
        "params": rows["params"],
    }
    record["outputs"]["search"] = _stack(rows["search"])
    pool_n = min(search_images(pre), len(data.target_unlabeled))
    record["images"] = {
        "search_bn": len(images.bn), "search_scoring": len(images.eval), "pool_bn": pool_n // 2,
        "pool_scoring": pool_n - pool_n // 2, "test": len(data.test), "labeled": len(data.labeled),
    }  # fmt: skip
    record["seconds"] = time.perf_counter() - start
    return record


def _stack(outs: list[Outputs]) -> dict[str, Any]:
    return {
        "logits": torch.stack([o.logits for o in outs]),
        "heads": None if outs[0].heads is None else [o.heads for o in outs],
    }


def _previous(path: Path) -> dict[str, Any]:
    """A recorded bank, with the outputs of a record written before the search's images changed renamed `pool`."""
    record = torch.load(path, weights_only=False)
    if "search_logits" in record:
        record["outputs"] = {"pool": {"logits": record.pop("search_logits"), "heads": record.pop("search_heads")}}
        record.pop("scoring_logits", None)
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--banks", nargs="*", default=[], choices=list(BANKS), help="train (if needed) and evaluate")
    p.add_argument("--run", nargs="*", default=[], help="any other trained run folder to evaluate")
    p.add_argument("--runs", default="runs/search-quality", help="folder of the trained banks and their outputs")
    p.add_argument("--sample", type=int, default=1024, help="spaces larger than this are sampled (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--search-only", action="store_true", help="recompute only the search's outputs of a record")
    args = p.parse_args()
    torch.set_num_threads(2)
    runs = REPO / args.runs
    folders = [train(name, runs) for name in args.banks] + [REPO / r for r in args.run]
    for run in [] if args.train_only else folders:
        dest = runs / run.name / CACHE
        previous = _previous(dest) if args.search_only else None
        record = evaluate(run, args.sample, args.seed, previous)
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.save(record, dest.with_suffix(".tmp"))
        dest.with_suffix(".tmp").rename(dest)
        print(f"{dest}: {len(record['configs'])} configs in {record['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
