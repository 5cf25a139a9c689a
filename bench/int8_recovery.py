"""INT8 recovery ladder: where post-training INT8 misses a 0.5-pt budget, what mixed precision and QAD win back.

Per bank and seed one run is trained; per case (an export recipe for that run) and seed, each step in its own process:

    edgedistill train  --budget B --task T --out RUN --teacher-cache C
    edgedistill export --run RUN --recipe R --budget B05                   # PTQ (may be refused: manifest kept)
    edgedistill export --run RUN --recipe R --budget B05 --fallback auto   # PTQ ladder, mixed precision, then QAD
    edgedistill export --run RUN --recipe R --budget B05 --fallback qat    # QAD (quantization-aware distillation)
    edgedistill bench  --artifact RUN/export/onnxruntime-int8 --budget B05 --no-reference   # after each export

B05 is the bank's budget with `accuracy.max_int8_drop_pts: 0.5`. Each export's manifest and bench record are kept
(`RUN/recovery/CASE-STEP.*.json`); a row per (case, seed, step) records FP32 and INT8 top-1 on the test split, the
drop, the latency p50/p90 (ONNX Runtime, the budget's threads), the post-training rung `auto` kept (and each rung's
drop), the layers kept in float, and QAD's training time.

Cases (`CASES`): the pretrained EfficientNet-Lite0 bank at 64 px with the shipped recipe, and the same run with
per-tensor weights, and without `reduce_range` (u8 x s8 products saturate int16 on x86 CPUs without VNNI).

    python bench/int8_recovery.py [--seeds 0 1 2] [--cases ...] [--steps 40] [--work runs/int8-recovery]
        [--out bench/results/int8_recovery]

Runs append to (and replace their own rows in) the JSON, so the benchmark can be run in chunks, a seed at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's table helper
from pretrained_quality import LITE0, WIDTHS, mean_std  # noqa: E402
from pretrained_quality import RECIPE as TRAIN_RECIPE  # noqa: E402

from edgedistill.bench.machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUDGET = "budgets/x86-2core-onnxruntime-64.yaml"
RECIPE = "edgedistill/resources/recipes/onnxruntime-int8.yaml"
MAX_DROP = 0.5
STEPS = ("ptq", "auto", "qat")
LITE0_TASK: dict[str, Any] = {  # pretrained_quality.py's MNIST task (smaller pool and test split), its Lite0 recipe
    "data": {"source": "mnist", "labels_per_class": 10, "unlabeled": 2000, "test": 1000},
    "teachers": [{"source": "ccexam:usps?crop=0.72"}, {"source": "ccexam:svhn?invert=1"}],
    "student": {"family": "timm", "width_choices": WIDTHS, "divisor": 8, "options": LITE0},
    "train": TRAIN_RECIPE | {"distiller": "distill-weighted", "num_sampled": 3},
}


@dataclass(frozen=True)
class Case:
    """One export recipe for one bank: the shipped ORT INT8 recipe with these `quantization` overrides."""

    bank: str
    quantization: dict[str, Any] = field(default_factory=dict)
    about: str = ""


BANKS: dict[str, dict[str, Any]] = {"lite0-64": LITE0_TASK}
CASES: dict[str, Case] = {
    "lite0-64": Case("lite0-64", about="pretrained Lite0 bank at 64 px, shipped recipe (per-channel, reduce_range)"),
    "lite0-64-per-tensor": Case("lite0-64", {"per_channel": False}, "per-tensor weights"),
    "lite0-64-no-reduce-range": Case("lite0-64", {"reduce_range": False}, "8-bit weights on an AVX2 CPU (no VNNI)"),
}


def _cli(*args: str) -> tuple[float, str | None]:
    """Run one edgedistill command; (seconds, its last error line or None)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode == 0:
        return time.perf_counter() - t0, None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return time.perf_counter() - t0, (lines[-1] if lines else f"exit code {proc.returncode}")


def _write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prepare(work: Path, bank: str, seed: int, steps: int) -> tuple[Path, Path, Path]:
    """Task file, 0.5-pt budget and run folder of one (bank, seed); the budget's recipe path made absolute."""
    spec = BANKS[bank]
    task = spec | {"name": f"{bank}-s{seed}", "data": spec["data"] | {"seed": seed}}
    task["train"] = spec["train"] | {"steps": steps, "seed": seed}
    budget = yaml.safe_load((REPO / BUDGET).read_text())
    budget["target"]["recipe"] = str(REPO / RECIPE)
    budget["accuracy"]["max_int8_drop_pts"] = MAX_DROP
    budget["name"] = f"{budget['name']}-drop05"
    return (
        _write_yaml(work / "tasks" / f"{bank}-s{seed}.yaml", task),
        _write_yaml(work / "budgets" / "drop05.yaml", budget),
        work / f"{bank}-s{seed}",
    )


def recipe_file(work: Path, name: str, case: Case) -> Path:
    recipe = yaml.safe_load((REPO / RECIPE).read_text())
    recipe["quantization"] |= case.quantization
    return _write_yaml(work / "recipes" / f"{name}.yaml", recipe)


def run_case(work: Path, name: str, seed: int, steps: int) -> list[dict[str, Any]]:
    """Train the case's bank for this seed (once), then the three exports, each benched; one row per step."""
    case = CASES[name]
    task, budget, run = prepare(work, case.bank, seed, steps)
    if not (run / "train.json").is_file():
        args = ["--budget", str(budget), "--task", str(task), "--out", str(run), "--teacher-cache", str(work / "t")]
        _, error = _cli("train", *args, "--overwrite", "--no-progress")
        if error:
            return [{"case": name, "seed": seed, "step": "train", "error": error}]
    recipe, art = recipe_file(work, name, case), run / "export" / "onnxruntime-int8"
    keep = run / "recovery"
    keep.mkdir(exist_ok=True)
    rows = []
    for step in STEPS:
        fallback = [] if step == "ptq" else ["--fallback", step]
        seconds, error = _cli("export", "--run", str(run), "--recipe", str(recipe), "--budget", str(budget), *fallback)
        row: dict[str, Any] = {"case": name, "seed": seed, "step": step, "export_seconds": round(seconds, 1)}
        if error and "max_int8_drop_pts" not in error:  # a refusal by the accuracy guard still writes the manifest
            rows.append(row | {"error": error})
            continue
        _cli("bench", "--artifact", str(art), "--budget", str(budget), "--no-reference", "--input", "calibration")
        for f in ("manifest.json", "bench.json"):
            if (art / f).is_file():
                (keep / f"{name}-{step}.{f}").write_text((art / f).read_text())
        rows.append(row | collect(keep, f"{name}-{step}") | {"refused": error is not None})
    return rows


def collect(keep: Path, stem: str) -> dict[str, Any]:
    """Top-1, drop, latency, float layers and QAD time of one kept artifact."""
    m = json.loads((keep / f"{stem}.manifest.json").read_text())
    acc, fallback, qad, ladder = m["accuracy"], m.get("fallback") or {}, m.get("qad") or {}, m.get("ladder") or {}
    out: dict[str, Any] = {
        "config": m["source"].get("config"),
        "fp32_top1": acc["fp32"],
        "int8_top1": acc["artifact"],
        "drop_pts": acc["drop_pts"],
        "layers_in_fp": fallback.get("layers_in_fp", []),
        "quantizable_layers": fallback.get("quantizable_layers"),
        "qad_seconds": qad.get("seconds"),
        "qad_steps": qad.get("steps"),
        "qad_trigger": qad.get("trigger"),
        "rung": ladder.get("chosen"),
        "rungs": {r["rung"]: {"drop_pts": r["drop_pts"], "seconds": r["seconds"]} for r in ladder.get("rungs", [])},
    }
    bench = keep / f"{stem}.bench.json"
    if bench.is_file():
        b = json.loads(bench.read_text())
        r = next(r for r in b["results"] if r["precision"] == "int8")
        out |= {"latency_ms": {s: r["stats"][s] for s in ("p50", "p90")}, "threads": r["threads"]}
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (case, step): mean ± std over seeds."""
    lines = [
        "| case | step | seeds | FP32 top-1 | INT8 top-1 | drop pts | rung kept | p50 ms | p90 ms | layers in float "
        "| QAD s | export s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, step in dict.fromkeys((r["case"], r["step"]) for r in rows if "drop_pts" in r):
        g = [r for r in rows if r["case"] == case and r["step"] == step and "drop_pts" in r]

        def vals(get: Any, group: list[dict[str, Any]] = g) -> list[float]:
            return [float(v) for v in (get(r) for r in group) if v is not None]

        cells = [
            mean_std(vals(lambda r: r["fp32_top1"])),
            mean_std(vals(lambda r: r["int8_top1"])),
            mean_std(vals(lambda r: r["drop_pts"])),
            ", ".join(sorted({str(r.get("rung") or "-") for r in g})),
            mean_std(vals(lambda r: (r.get("latency_ms") or {}).get("p50")), 3),
            mean_std(vals(lambda r: (r.get("latency_ms") or {}).get("p90")), 3),
            mean_std(vals(lambda r: len(r["layers_in_fp"])), 1),
            mean_std(vals(lambda r: r["qad_seconds"]), 0),
            mean_std(vals(lambda r: r.get("export_seconds")), 0),
        ]
        lines.append(f"| {case} | {step} | {len(g)} | " + " | ".join(cells) + " |")
    return lines


def rung_table(rows: list[dict[str, Any]]) -> list[str]:
    """The drop of every post-training rung `--fallback auto` tried (mean ± std over seeds, per case)."""
    names = list(dict.fromkeys(k for r in rows for k in r.get("rungs") or {}))
    if not names:
        return []
    lines = ["| case | seeds | " + " | ".join(f"{n} drop pts" for n in names) + " | rung s (bias / AdaRound) |",
             "|---|---|" + "---|" * (len(names) + 1)]  # fmt: skip
    for case in dict.fromkeys(r["case"] for r in rows if r.get("rungs")):
        g = [r["rungs"] for r in rows if r["case"] == case and r.get("rungs")]
        drops = [mean_std([x[n]["drop_pts"] for x in g if n in x]) for n in names]
        secs = "/".join(mean_std([x[n]["seconds"] for x in g if n in x], 0) for n in names[1:])
        lines.append(f"| {case} | {len(g)} | " + " | ".join(drops) + f" | {secs} |")
    return ["Post-training rungs of `--fallback auto` (each an all-INT8 artifact on the test split):", "", *lines]


def write(out: Path, rows: list[dict[str, Any]], command: str) -> None:
    """Merge `rows` into OUT.json (a row per case, seed and step) and rewrite OUT.md."""
    path = out.with_suffix(".json")
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    key = lambda r: (r["case"], r["seed"], r["step"])  # noqa: E731
    merged = {key(r): r for r in [*old, *rows]}
    record = {
        "command": command,
        "machine": machine_info(),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "max_int8_drop_pts": MAX_DROP,
        "cases": {k: {"bank": c.bank, "quantization": c.quantization, "about": c.about} for k, c in CASES.items()},
        "rows": sorted(
            merged.values(), key=lambda r: (r["case"], r["seed"], STEPS.index(r["step"]) if r["step"] in STEPS else -1)
        ),  # fmt: skip
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    m = record["machine"]
    md = [f"# INT8 recovery ladder (budget: drop ≤ {MAX_DROP} pt)", "", f"Command: `{command}`", "",
          f"Machine of the last update ({record['updated']}): {m['cpu']} ({', '.join(m['cpu_flags'])}), "
          f"{m['usable_cores']} usable cores; earlier rows may come from another machine (see the JSON)", "",
          *table(record["rows"]), "", *rung_table(record["rows"]), ""]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--steps", type=int, default=40, help="training steps of each bank")
    ap.add_argument("--work", type=Path, default=Path("runs") / "int8-recovery")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "int8_recovery")
    args = ap.parse_args()
    command = "python bench/int8_recovery.py " + " ".join(sys.argv[1:])
    for seed in args.seeds:
        for name in args.cases:
            rows = run_case(args.work.resolve(), name, seed, args.steps)
            write(args.out, rows, command)
            print(json.dumps(rows)[:400], flush=True)


if __name__ == "__main__":
    main()
