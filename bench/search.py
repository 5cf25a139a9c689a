"""Width-search benchmark on a trained bank: latency predictor error, UPEM vs accuracy, search time, regret, budgets.

On a copy of the run (default runs/demo → runs/search-bench):
1. `edgedistill profile` builds the latency table for the budgets' runtime/precision/input/threads (if absent).
2. Predictor: predicted vs measured end-to-end latency (each config exported, quantized and timed in its own
   process) over N seeded random configs that are not profiling anchors.
3. Every config: BN recalibrated on 2,000 unlabeled images, test accuracy (labels) and each UPEM (no labels);
   Spearman ρ per UPEM.
4. For each budget and strategy: `search_widths` (UPEM + latency table + measured shortlist); search time, regret
   vs the best config that is feasible by the same cost models in the exhaustive labelled evaluation.
5. For each budget: `edgedistill search`, `edgedistill export --budget B --int8`, `edgedistill bench --budget B`.

Run it with nothing else on the cores (it times latency).
Usage: python bench/search.py [--run runs/demo] [--budgets budgets/demo-cpu.yaml budgets/demo-cpu-tight.yaml]
       [--configs 30] [--out bench/results/search]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import edgedistill as ed
from edgedistill.bench.machine import machine_info, package_versions
from edgedistill.data import build_task_data
from edgedistill.distill.evaluate import accuracy
from edgedistill.errors import ConfigError
from edgedistill.inputs import preprocess_for
from edgedistill.models import recalibrate_bn
from edgedistill.pipeline.search import Measurer, latency_table, unlabeled_images
from edgedistill.run import RunDir
from edgedistill.search import UPEMS, CostEstimator, CostInputs, LatencyLUT, SearchSettings, over_limits
from edgedistill.search import search_widths as run_search
from edgedistill.search.measure import Timing, time_module
from edgedistill.search.pareto import pareto_plot
from edgedistill.search.upem import ConfigOutputs
from edgedistill.task import load_task

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=REPO, check=True)
    return time.perf_counter() - t0


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 0.0


def predictor_error(bank: Any, lut: LatencyLUT, recipe: Any, shape: tuple, n: int, threads: int) -> dict[str, Any]:
    from edgedistill.search.lut import LatencyPredictor

    predict = LatencyPredictor(lut, bank)
    anchors = {tuple(a.config) for a in lut.anchors}
    gen = torch.Generator().manual_seed(7)
    configs: list[tuple[float, ...]] = []
    while len(configs) < n:
        c = bank.sample_config(gen)
        if c not in anchors and c not in configs:
            configs.append(c)
    rows = []
    for c in configs:
        measured = time_module(ed.extract(bank, c), shape, recipe, Timing(threads=threads))
        pred = predict(c)
        raw = predict.block_sum(c)
        rows.append({"config": list(c), "predicted_ms": pred, "block_sum_ms": raw, "measured_ms": measured})
    out: dict[str, Any] = {"configs": rows}
    for stat in ("p50", "p90"):
        errs = [abs(r["predicted_ms"][stat] - r["measured_ms"][stat]) / r["measured_ms"][stat] * 100 for r in rows]
        raw = [abs(r["block_sum_ms"][stat] - r["measured_ms"][stat]) / r["measured_ms"][stat] * 100 for r in rows]
        out[stat] = {
            "median_error_pct": statistics.median(errs),
            "mean_error_pct": statistics.fmean(errs),
            "max_error_pct": max(errs),
            "uncalibrated_median_error_pct": statistics.median(raw),
            "spearman": _spearman([r["predicted_ms"][stat] for r in rows], [r["measured_ms"][stat] for r in rows]),
        }
    return out


def labelled_evaluation(bank: Any, data: Any, pre: Any, bn_images: int) -> dict[tuple[float, ...], dict[str, Any]]:
    """Every config: test accuracy (BN recalibrated as `train`/`search` do) and every UPEM that applies."""
    assert data.test.labels is not None
    calib = data.calibration(min(bn_images, len(data.unlabeled)), 0).images
    batches = [pre(torch.from_numpy(calib[i : i + 500])) for i in range(0, len(calib), 500)]
    images = unlabeled_images(data, pre, torch.device("cpu"), bn_images=bn_images)
    outputs = ConfigOutputs(bank, images.bn, images.eval)
    references = {n: UPEMS.get(n).reference(outputs, bank.width_choices, bank.num_stages) for n in UPEMS.names()}
    rows = {}
    for c in bank.all_configs():
        out = outputs(c)
        upems = {}
        for name in UPEMS.names():
            try:
                upems[name] = UPEMS.get(name)(out, references[name])
            except ConfigError as e:
                upems[name] = None
                upems[f"{name}_error"] = str(e)
        recalibrate_bn(bank, batches, config=c)
        acc = accuracy(bank, data.test.images, data.test.labels, pre, torch.device("cpu"), 1000)
        rows[c] = {"config": list(c), "test_accuracy": acc, "upem": upems}
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--copy", default="runs/search-bench")
    p.add_argument("--budgets", nargs="+", default=["budgets/demo-cpu.yaml", "budgets/demo-cpu-tight.yaml"])
    p.add_argument("--configs", type=int, default=30)
    p.add_argument("--strategies", nargs="+", default=["auto"])
    p.add_argument("--out", default="bench/results/search")
    p.add_argument("--test-images", type=int, default=None, help="subsample the test split (smoke runs only)")
    p.add_argument("--reuse-profile", action="store_true", help="keep a latency table the run already has")
    args = p.parse_args()
    torch.set_num_threads(2)

    run = REPO / args.copy
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(REPO / args.run, run, ignore=shutil.ignore_patterns("export", "checkpoint", "subnets", "searches"))
    rd = RunDir(run)
    budgets = [ed.load_budget(REPO / b) for b in args.budgets]
    b0 = budgets[0].budget
    lut_path = latency_table(rd, budgets[0])
    profile_s = 0.0
    if not (args.reuse_profile and lut_path.is_file()):
        profile_s = _cli(
            "profile", "--run", str(run), "--runtime", b0.target.runtime, "--precision", b0.target.precision,
            "--input", f"{b0.input.height}x{b0.input.width}", "--threads", str(b0.target.threads), "--no-progress",
        )  # fmt: skip
    lut = LatencyLUT.load(lut_path)
    bank = ed.load_bank(rd.bank)
    task, base = load_task(rd.task)
    data = build_task_data(task.data, base)
    if args.test_images:
        import dataclasses

        import numpy as np

        data = dataclasses.replace(data, test=data.test.subset(np.arange(args.test_images)))
    pre = preprocess_for(budgets[0], data)

    pred = predictor_error(bank, lut, budgets[0].recipe, b0.input.shape, args.configs, b0.target.threads)
    print(f"predictor p50 median error {pred['p50']['median_error_pct']:.1f}%", flush=True)
    labelled = labelled_evaluation(bank, data, pre, task.train.bn_calibration_images)
    accs = [r["test_accuracy"] for r in labelled.values()]
    rho = {}
    for name in UPEMS.names():
        vals = [r["upem"][name] for r in labelled.values()]
        rho[name] = _spearman(vals, accs) if None not in vals else None
    print(f"UPEM spearman {rho}", flush=True)

    searches = []
    images = unlabeled_images(data, pre, torch.device("cpu"), bn_images=task.train.bn_calibration_images)
    for resolved in budgets:
        b = resolved.budget
        estimate = CostEstimator(CostInputs(bank, b.input.shape, lut))
        feasible = {c: r for c, r in labelled.items() if not over_limits(estimate(c), b.limits)}
        best = max(feasible.values(), key=lambda r: r["test_accuracy"])
        for strategy in args.strategies:
            # The shortlist is measured once per budget (first strategy); the others show search time and regret.
            measure = Measurer(bank, resolved, images) if strategy == args.strategies[0] else None
            result = run_search(
                bank, b.limits, b.input.shape, images, lut=lut, settings=SearchSettings(strategy=strategy),
                measure=measure,
            )  # fmt: skip
            chosen = labelled[result.chosen.config]
            m = result.chosen.measured_ms
            violates = None if m is None else bool(over_limits(estimate(result.chosen.config), b.limits, m))
            searches.append(
                {
                    "budget": b.name,
                    "strategy": strategy,
                    "chosen": list(result.chosen.config),
                    "chosen_test_accuracy": chosen["test_accuracy"],
                    "best_feasible": best["config"],
                    "best_feasible_test_accuracy": best["test_accuracy"],
                    "regret_pts": best["test_accuracy"] - chosen["test_accuracy"],
                    "feasible_configs": len(feasible),
                    "scored": len(result.evaluated),
                    "search_seconds": result.seconds,
                    "measure_seconds": result.measure_seconds,
                    "predicted_ms": result.chosen.latency_ms,
                    "measured_ms": m,
                    "violates_when_measured": violates,
                }
            )
            print(json.dumps(searches[-1]), flush=True)
            if strategy == args.strategies[0]:
                acc_of = {c: r["test_accuracy"] for c, r in labelled.items()}
                pareto_plot(result, b.limits, b.name, REPO / f"{args.out}-{b.name}.png", accuracy=acc_of)

    deployed = []
    for path, resolved in zip(args.budgets, budgets, strict=True):
        name = resolved.budget.name
        _cli("search", "--budget", path, "--run", str(run), "--no-progress")
        _cli("export", "--run", str(run), "--budget", path, "--int8")
        art = rd.export_dir(resolved.recipe.target)  # the INT8 artifact, also under precision auto
        _cli("bench", "--run", str(run), "--budget", path, "--artifact", str(art))
        bench = json.loads((art / "bench.json").read_text())
        trained_for = json.loads(rd.train_json.read_text())["budget"]
        record = json.loads((run / ("search.json" if name == trained_for else f"searches/{name}.json")).read_text())
        deployed.append(
            {
                "budget": name,
                "config": record["chosen"]["config"],
                "channels": record["chosen"]["channels"],
                "macs": record["chosen"]["macs"],
                "predicted_ms": record["chosen"]["latency_ms"],
                "search_measured_ms": record["chosen"]["measured_ms"],
                "int8_top1": bench["accuracy"]["artifact"],
                "bench_p50_ms": bench["results"][0]["stats"]["p50"],
                "bench_p90_ms": bench["results"][0]["stats"]["p90"],
                "verdict": bench["verdict"],
                "checks": bench["checks"],
            }
        )
        print(json.dumps(deployed[-1]), flush=True)

    result = {
        "command": " ".join(["python", "bench/search.py", *sys.argv[1:]]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions(["torch", "onnxruntime", "onnx", "edgedistill"]),
        "torch_threads": torch.get_num_threads(),
        "run": args.run,
        "budgets": args.budgets,
        "profile": {
            "seconds": profile_s,
            "blocks": len(lut.blocks),
            "anchors": len(lut.anchors),
            "calibration": lut.calibration,
            "overhead_ms": lut.overhead_ms,
        },  # fmt: skip
        "predictor": pred,
        "upem_spearman": rho,
        "labelled": list(labelled.values()),
        "searches": searches,
        "deployed": deployed,
    }
    out = REPO / f"{args.out}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    (REPO / f"{args.out}.md").write_text(markdown(result))
    print(out)


def _ms(stats: dict[str, float] | None, stat: str = "p90") -> str:
    return "-" if not stats else f"{stats[stat]:.3f}"


def markdown(r: dict[str, Any]) -> str:
    """The committed report."""
    m = r["machine"]
    pr = r["predictor"]
    lines = [
        "# Width search benchmark",
        "",
        f"Command: `{r['command']}` ({r['created']}).",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['platform']}; torch threads {r['torch_threads']};"
        f" versions {', '.join(f'{k} {v}' for k, v in r['versions'].items())}.",
        f"Bank: `{r['run']}` (copied). Budgets: {', '.join(f'`{b}`' for b in r['budgets'])}.",
        "",
        "## Latency predictor (LUT) vs measured end-to-end latency",
        "",
        f"`edgedistill profile`: {r['profile']['blocks']} block shapes + {r['profile']['anchors']} anchor configs in "
        f"{r['profile']['seconds']:.0f} s. {len(pr['configs'])} seeded random configs (not anchors), each exported, "
        "quantized and timed in its own process.",
        "",
        "| statistic | median error % | mean error % | max error % | median error % without anchor calibration "
        "| Spearman ρ (pred vs meas) |",
        "|---|---|---|---|---|---|",
    ]
    for stat in ("p50", "p90"):
        e = pr[stat]
        lines.append(
            f"| {stat} | **{e['median_error_pct']:.1f}** | {e['mean_error_pct']:.1f} | {e['max_error_pct']:.1f} | "
            f"{e['uncalibrated_median_error_pct']:.1f} | {e['spearman']:.3f} |"
        )
    lines += [
        "",
        f"## UPEM vs test accuracy ({len(r['labelled'])} configs, every config of the bank)",
        "",
        "Scores use 1,000 unlabeled images (BN recalibrated per config on 1,000 others); accuracy: 10,000 labelled "
        "test images, BN recalibrated on 2,000 unlabeled images.",
        "",
        "| UPEM | Spearman ρ with test accuracy |",
        "|---|---|",
    ]
    for name, rho in r["upem_spearman"].items():
        err = next((x["upem"].get(f"{name}_error") for x in r["labelled"] if x["upem"].get(f"{name}_error")), None)
        lines.append(f"| `{name}` | {'n/a: ' + err if rho is None else f'**{rho:.3f}**'} |")
    lines += [
        "",
        "## Search per budget and strategy",
        "",
        "Regret: test accuracy of the best config that the same cost models call feasible (exhaustive labelled "
        "evaluation) minus the chosen config's. Search time excludes the end-to-end measurement of the shortlist.",
        "",
        "| budget | strategy | chosen | test % | best feasible | test % | regret pts | scored / feasible "
        "| search s | pred p90 ms | measured p90 ms | violates |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["searches"]:
        v = "-" if s["violates_when_measured"] is None else ("**yes**" if s["violates_when_measured"] else "no")
        lines.append(
            f"| {s['budget']} | {s['strategy']} | {s['chosen']} | {s['chosen_test_accuracy']:.2f} | "
            f"{s['best_feasible']} | {s['best_feasible_test_accuracy']:.2f} | {s['regret_pts']:.2f} | "
            f"{s['scored']} / {s['feasible_configs']} | {s['search_seconds']:.1f} | {_ms(s['predicted_ms'])} | "
            f"{_ms(s['measured_ms'])} | {v} |"
        )
    lines += [
        "",
        "## One bank, several budgets: `edgedistill search` → `export --int8` → `bench`",
        "",
        "| budget | widths | channels | MACs M | pred p90 ms | search-measured p90 ms | INT8 top-1 % "
        "| bench p50 ms | bench p90 ms | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in r["deployed"]:
        lines.append(
            f"| {d['budget']} | {d['config']} | {d['channels']} | {d['macs'] / 1e6:.2f} | {_ms(d['predicted_ms'])} | "
            f"{_ms(d['search_measured_ms'])} | {d['int8_top1']:.2f} | {d['bench_p50_ms']:.3f} | "
            f"{d['bench_p90_ms']:.3f} | {d['verdict']} |"
        )
    lines += ["", "Pareto plots: " + ", ".join(f"`{Path(b).stem}`" for b in r["budgets"]) + " → "
              "`bench/results/search-<budget>.png`.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
