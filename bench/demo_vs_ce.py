"""Demo benchmark: distilled student (demo default distiller) vs the same subnet trained on the 100 labels alone.

Runs, each step in its own process (as a user would):
    edgedistill train --budget B --out runs/bench-<distiller> --distiller <distiller> --overwrite
    edgedistill export --run runs/bench-<distiller> --int8
    edgedistill bench --run runs/bench-<distiller> --artifact runs/bench-<distiller>/export/onnxruntime-int8
for each distiller (default: distill-weighted, ce-only), then writes bench/results/demo_vs_ce.{json,md}.

Usage: python bench/demo_vs_ce.py [--budget budgets/demo-cpu.yaml] [--seeds 0] [--distillers distill-weighted ce-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=REPO, check=True)


def _one(budget: str, distiller: str, seed: int) -> dict:
    run = f"runs/bench-{distiller}-s{seed}"
    task = REPO / "runs" / f"task-s{seed}.yaml"
    text = (REPO / "tasks" / "demo-mnist.yaml").read_text().replace("  seed: 0\n", f"  seed: {seed}\n")
    task.parent.mkdir(parents=True, exist_ok=True)
    task.write_text(text)
    _cli(
        "train",
        "--budget",
        budget,
        "--task",
        str(task),
        "--out",
        run,
        "--distiller",
        distiller,
        "--overwrite",
        "--no-progress",
    )
    _cli("export", "--run", run, "--int8")
    _cli("bench", "--run", run, "--artifact", f"{run}/export/onnxruntime-int8")  # INT8 whatever precision auto deploys
    train = json.loads((REPO / run / "train.json").read_text())
    bench = json.loads((REPO / run / "export" / "onnxruntime-int8" / "bench.json").read_text())
    by_rt = {f"{r['runtime']}-{r['precision']}": r for r in bench["results"]}
    return {
        "distiller": distiller,
        "seed": seed,
        "steps": train["steps"],
        "train_seconds": train["train_seconds"],
        "width_accuracy": train["width_accuracy"],
        "chosen": train["chosen"],
        "fp32_top1": bench["accuracy"]["fp32"],
        "int8_top1": bench["accuracy"]["quantized"],
        "int8_agreement": bench["accuracy"]["agreement"],
        "latency_ms": {k: {s: v["stats"][s] for s in ("p50", "p90", "p99", "mean")} for k, v in by_rt.items()},
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in by_rt.items()},
        "teachers": [{k: t.get(k) for k in ("source", "score", "alpha")} for t in train.get("teachers", [])],
        "verdict": bench["verdict"],
        "machine": bench["results"][0]["machine"],
    }


def _markdown(rows: list[dict], budget: str, command: str) -> str:
    m = rows[0]["machine"]
    lines = [
        "# Demo: distilled slimmable student vs labels only (MNIST, 10 labels/class)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['platform']}, python {m['python']}  ",
        f"Budget: `{budget}`; latency: batch 1, budget threads, each runtime in its own process.  ",
        f"Date: {datetime.now(timezone.utc).date()}",
        "",
        "| distiller | seed | width 1.0 | 0.75 | 0.5 | 0.25 | chosen widths | MACs M | FP32 top-1 | INT8 top-1 "
        "| INT8 p50 / p90 / p99 ms | ORT FP32 p50 ms | torch FP32 p50 ms | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w, lat = r["width_accuracy"], r["latency_ms"]
        i8 = lat["onnxruntime-int8"]
        lines.append(
            f"| {r['distiller']} | {r['seed']} | {w['1.0']:.2f} | {w['0.75']:.2f} | {w['0.5']:.2f} | {w['0.25']:.2f} "
            f"| {r['chosen']['config']} | {r['chosen']['macs'] / 1e6:.2f} "
            f"| {r['fp32_top1']:.2f} | {r['int8_top1']:.2f} "
            f"| {i8['p50']:.3f} / {i8['p90']:.3f} / {i8['p99']:.3f} | {lat['onnxruntime-fp32']['p50']:.3f} "
            f"| {lat['torch-fp32']['p50']:.3f} | {r['verdict']} |"
        )
    lines += [
        "",
        "Width columns: test top-1 % of the bank at that uniform width after BN recalibration "
        "(2000 unlabeled images). FP32/INT8: the exported subnet for the budget, 10,000 MNIST test images.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="budgets/demo-cpu.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--distillers", nargs="+", default=["distill-weighted", "ce-only"])
    args = ap.parse_args()
    rows = [_one(args.budget, d, s) for s in args.seeds for d in args.distillers]
    command = "python bench/demo_vs_ce.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo_vs_ce.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    (RESULTS / "demo_vs_ce.md").write_text(_markdown(rows, args.budget, command.strip()))
    print((RESULTS / "demo_vs_ce.md").read_text())


if __name__ == "__main__":
    main()
