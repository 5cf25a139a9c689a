"""The 224-px flagship end to end: a pretrained EfficientNet-Lite0 bank, trained, exported INT8, benched, reported.

Runs, each step in its own process (as a user would), and times each:
    edgedistill train  --task tasks/mnist-224-lite0.yaml --budget B_ORT --out R --overwrite
    edgedistill export --run R --int8 --fallback auto       # the run's budget: ONNX Runtime INT8, 2 threads
    edgedistill export --run R --budget B_OV --int8 --fallback auto   # the same bank for OpenVINO INT8
    edgedistill bench  --run R                               # every artifact, PASS/FAIL per budget
    edgedistill report R
then writes bench/results/flagship_224.{json,md}: the wall time of every stage (and the train stage's own split:
teacher cache, training, per-width evaluation, search), per-width top-1, the chosen subnets, INT8 drop, latency.

Each INT8 artifact is benched against its own budget. `--after-export` reuses the exports too (bench and report
only) and keeps the export wall times of the previous record.

Usage: python bench/flagship_224.py [--out runs/flagship-224] [--steps N] [--after-train | --after-export]
    [--fallback auto] [--qad-steps N] [--runtimes onnxruntime openvino]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TASK = "tasks/mnist-224-lite0.yaml"
QAD_FIELDS = ("trigger", "steps", "seconds", "bn", "layers", "drop_before_pts", "drop_after_pts", "parity", "method")
BUDGETS = {"onnxruntime": "budgets/x86-2core-onnxruntime-224.yaml", "openvino": "budgets/x86-2core-openvino-224.yaml"}


def _cli(*args: str) -> float:
    """Run `edgedistill ARGS` in its own process; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=REPO, check=True)
    return time.perf_counter() - start


def _artifact(folder: Path) -> dict[str, Any]:
    bench = json.loads((folder / "bench.json").read_text())
    rows = {f"{r['runtime']}-{r['precision']}": r["stats"] for r in bench["results"]}
    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        "artifact": folder.name,
        "budget": bench["budget"],
        "config": manifest["source"].get("config"),
        "macs_m": bench["cost"]["macs"] / 1e6,
        "params_m": bench["cost"]["params"] / 1e6,
        "accuracy": bench["accuracy"],
        "latency_ms": {k: {s: v[s] for s in ("p50", "p90", "p99")} for k, v in rows.items()},
        "checks": bench["checks"],
        "layers_in_float": len((manifest.get("fallback") or {}).get("layers_in_fp", [])),
        "qad": {k: (manifest.get("qad") or {}).get(k) for k in QAD_FIELDS} if manifest.get("qad") else None,
        "notes": manifest.get("notes", {}),
        "verdict": bench["verdict"],
        "machine": bench["results"][0]["machine"],
    }


def run(
    out: str,
    steps: int | None,
    after_train: bool = False,
    fallback: str = "auto",
    runtimes: tuple[str, ...] = ("onnxruntime", "openvino"),
    qad_steps: int | None = None,
    after_export: bool = False,
) -> dict[str, Any]:
    extra = ["--steps", str(steps)] if steps else []
    qad = ["--qad-steps", str(qad_steps)] if qad_steps else []
    wall: dict[str, float | None] = {"train": None}
    previous = json.loads((RESULTS / "flagship_224.json").read_text()) if after_export else {}
    if not (after_train or after_export):
        wall["train"] = _cli(
            "train",
            "--task",
            TASK,
            "--budget",
            BUDGETS["onnxruntime"],
            "--out",
            out,
            "--overwrite",
            "--no-progress",
            *extra,
        )
    budgets = {r: [] if r == "onnxruntime" else ["--budget", BUDGETS[r]] for r in runtimes}  # the run's own: ORT's
    for runtime, budget in budgets.items():
        key = f"export_{runtime}_int8"
        if after_export:
            wall[key] = previous["wall_seconds"][key]
        else:
            wall[key] = _cli("export", "--run", out, *budget, "--int8", "--fallback", fallback, *qad)
    for runtime, budget in budgets.items():
        wall[f"bench_{runtime}"] = _cli("bench", "--run", out, *budget)
    wall["report"] = _cli("report", out)
    root = REPO / out
    train = json.loads((root / "train.json").read_text())
    arts = [_artifact(p.parent) for p in sorted((root / "export").glob("*/bench.json"))]
    return {
        "task": TASK,
        "budgets": BUDGETS,
        "run": out,
        "wall_seconds": {k: None if v is None else round(v, 1) for k, v in wall.items()},
        "total_seconds": round(sum(v for v in wall.values() if v is not None), 1),
        "train_process_not_timed": wall["train"] is None,
        "exports_from": (previous.get("exports_from") or previous.get("command")) if after_export else None,
        "train_stage_seconds": train["stage_seconds"],
        "steps": train["steps"],
        "teachers": [{k: t.get(k) for k in ("source", "score", "alpha")} for t in train["teachers"]],
        "width_accuracy": train["width_accuracy"],
        "chosen": {k: train["chosen"][k] for k in ("config", "macs", "params", "upem", "test_accuracy")},
        "search": train["search"],
        "artifacts": arts,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(r: dict[str, Any], command: str) -> str:
    m = r["artifacts"][0]["machine"] if r["artifacts"] else {}
    wall, split = r["wall_seconds"], r["train_stage_seconds"]
    lines = [
        "# 224-px flagship: pretrained EfficientNet-Lite0 bank → INT8 on a 2-core x86 CPU",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m.get('cpu', '?')}, {m.get('usable_cores', '?')} usable cores, flags "
        f"{', '.join(m.get('cpu_flags', [])) or '?'}  ",
        f"Task: `{r['task']}` ({r['steps']} steps); date {r['created'][:10]}."
        + (f" Exports (and their times) from `{r['exports_from']}`." if r.get("exports_from") else ""),
        "",
        f"## Wall time per stage (each its own process): {r['total_seconds'] / 60:.1f} min in all"
        + (" after training" if r.get("train_process_not_timed") else ""),
        "",
        "| stage | seconds |",
        "|---|---|",
        *(f"| {k} | {'not timed (--after-train)' if v is None else f'{v:.1f}'} |" for k, v in wall.items()),
        "",
        "Inside `train`: " + ", ".join(f"{k} {v:.1f} s" for k, v in split.items()) + ".",
        "",
        "## Bank (test top-1 % per uniform width, 1,000 MNIST test images, BN recalibrated per width)",
        "",
        "| width | " + " | ".join(r["width_accuracy"]) + " |",
        "|---|" + "---|" * len(r["width_accuracy"]),
        "| top-1 | " + " | ".join(f"{v:.2f}" for v in r["width_accuracy"].values()) + " |",
        "",
        "Teachers (kNN similarity, α): "
        + ", ".join(f"`{t['source']}` {t['score']:.2f} / {t['alpha']:.2f}" for t in r["teachers"])
        + ".",
        "",
        "## Deployed subnets",
        "",
        "| artifact | budget | widths | MACs M | params M | FP32 top-1 | INT8 top-1 | drop | p50 / p90 ms "
        "| FP32 p50 ms | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in r["artifacts"]:
        acc, lat = a["accuracy"], a["latency_ms"]
        q = next((v for k, v in lat.items() if k.endswith("int8")), None)
        f = next((v for k, v in lat.items() if k.endswith("fp32") and not k.startswith("torch")), None)
        lines.append(
            f"| {a['artifact']} | {a['budget']} | {a['config']} | {a['macs_m']:.1f} | {a['params_m']:.3f} "
            f"| {acc['fp32']:.2f} | {acc['quantized']:.2f} | {acc['drop_pts']:+.2f} "
            f"| {q['p50']:.2f} / {q['p90']:.2f} | {f['p50'] if f else float('nan'):.2f} | {a['verdict']} |"
            if q
            else f"| {a['artifact']} | {a['budget']} | {a['config']} | {a['macs_m']:.1f} | {a['params_m']:.3f} "
            f"| {acc['fp32']:.2f} | - | - | - | - | {a['verdict']} |"
        )
    kept = [f"{a['artifact']} {a['layers_in_float']}" for a in r["artifacts"] if a.get("layers_in_float")]
    if kept:
        lines += ["", "Layers kept in float by `--fallback` (mixed precision): " + ", ".join(kept) + "."]
    for a in r["artifacts"]:
        q = a.get("qad")
        if q:
            par = q.get("parity") or {}
            lines += [
                "",
                f"{a['artifact']}: QAD ({q['trigger']}): {q['steps']} steps in {q['seconds']:.0f} s, BN {q['bn']}; "
                f"test drop {q['drop_before_pts']:+.2f} → {q['drop_after_pts']:+.2f} pts; fake-quant model vs "
                f"artifact: {par.get('agreement_pct', float('nan')):.1f}% top-1 agreement.",
            ]
        for k, v in (a.get("notes") or {}).items():
            if k == "qad":
                lines += ["", f"{a['artifact']}: {v}."]
    lines += ["", "Failed checks: " + ("; ".join(_failed(r)) or "none") + "."]
    return "\n".join(lines) + "\n"


def _failed(r: dict[str, Any]) -> list[str]:
    out = []
    for a in r["artifacts"]:
        for c in a["checks"]:
            if c.get("passed") is False:
                out.append(f"{a['artifact']}: {c['name']} {c['value']:.3f} > {c['limit']:g} {c['unit']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/flagship-224")
    ap.add_argument("--steps", type=int, default=None, help="override the task's steps (a shorter check)")
    ap.add_argument("--after-train", action="store_true", help="reuse the trained run in --out: export, bench, report")
    ap.add_argument("--after-export", action="store_true", help="reuse the exports too: bench and report only")
    ap.add_argument("--fallback", default="auto", choices=["none", "auto", "qat"], help="export --fallback")
    ap.add_argument("--runtimes", nargs="+", default=list(BUDGETS), choices=list(BUDGETS), help="INT8 exports to make")
    ap.add_argument("--qad-steps", type=int, default=None, help="export --qad-steps (QAD under --fallback auto/qat)")
    args = ap.parse_args()
    result = run(
        args.out, args.steps, args.after_train, args.fallback, tuple(args.runtimes), args.qad_steps, args.after_export
    )
    command = "python bench/flagship_224.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "flagship_224.json").write_text(json.dumps({"command": command.strip(), **result}, indent=2) + "\n")
    (RESULTS / "flagship_224.md").write_text(markdown(result, command.strip()))
    print((RESULTS / "flagship_224.md").read_text())


if __name__ == "__main__":
    main()
