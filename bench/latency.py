"""Latency benchmark: runtimes × precisions × models on this machine, each timing in its own process.

Models: uniform widths of the demo run's trained bank (28 px) and the 224-px `mobilenet` student
(see bench/latency_models.py). Targets: torch eager FP32 (reference), ONNX Runtime FP32/INT8,
OpenVINO FP32/FP16/INT8. Every timing runs `python -m edgedistill.bench.runner` (or the torch
runner) in a fresh process on real images; then `python -m edgedistill.bench.bare`, a plain loop
around the same runtime call, shows the harness overhead. Writes bench/results/latency_runtimes.{json,md}
(bench/results/latency-<ISA>.md are the INT8-vs-FP32 studies of bench/int8_latency.py).

Usage (on an otherwise idle machine: nothing else may run meanwhile):
    python bench/latency.py [--run runs/demo] [--widths 0.25 0.5 1.0] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from latency_models import TARGETS, BenchModel, demo_widths, load_model, mobilenet_224  # bench/, next to this file

import edgedistill as ed
from edgedistill.bench.launch import run_isolated
from edgedistill.bench.machine import machine_info, package_versions

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BARE = ("torch", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-int8")
BLOCK = 10  # calls per block for the harness-overhead comparison


def _timing(a: argparse.Namespace) -> list[str]:
    return [
        *("--threads", str(a.threads), "--batch", "1", "--runs", str(a.runs), "--min-time", str(a.min_time)),
        *("--warmup", "20", "--warmup-time", "0.5"),
    ]


def _runner(artifact: Path, a: argparse.Namespace, inputs: Path) -> dict[str, Any]:
    """The torch-free runner's record for one artifact, with the `_timing` settings."""
    timing = {"runs": a.runs, "min_time": a.min_time, "warmup": 20, "warmup_time": 0.5}
    return ed.time_artifact(artifact, threads=a.threads, batch=1, input=str(inputs), **timing).raw


def block_median(times_ms: list[float], block: int) -> float:
    """Median over consecutive blocks of `block` calls of the per-call mean (as the bare loop reports it)."""
    n = len(times_ms) // block
    return float(np.median(np.asarray(times_ms[: n * block]).reshape(n, block).mean(axis=1)))


def _one_round(m: BenchModel, a: argparse.Namespace) -> dict[str, Any]:
    """Every target once, each harness timing followed by its bare loop, all on the same real inputs."""
    shape = ",".join(map(str, m.input_shape))
    common = [*_timing(a), "--input", str(m.inputs)]
    bare_args = ["--threads", str(a.threads), "--calls", str(a.runs), "--min-time", str(a.min_time)]
    bare_args += ["--block", str(BLOCK), "--input", str(m.inputs)]
    out: dict[str, Any] = {}
    torch_args = [str(m.subnet), "--input-shape", shape, *common]
    out["torch"] = {
        "result": run_isolated("edgedistill.bench.torch_runner", torch_args, threads=a.threads),
        "bare": run_isolated(
            "edgedistill.bench.bare", [str(m.subnet), "--runtime", "torch", "--input-shape", shape, *bare_args]
        ),
    }
    for target, art in m.artifacts.items():
        result = _runner(art, a, m.inputs)
        bare = None
        if target in BARE:
            bare = run_isolated("edgedistill.bench.bare", [str(art), *bare_args], threads=a.threads)
        out[target] = {"result": result, "bare": bare}
        print(f"{m.name} {target}: p50 {result['stats']['p50']:.3f} ms", flush=True)
    return out


def _time_model(m: BenchModel, a: argparse.Namespace) -> dict[str, Any]:
    """`a.rounds` interleaved rounds; per target the round with the median p50, and the median overhead."""
    rounds = [_one_round(m, a) for _ in range(a.rounds)]
    out: dict[str, Any] = {"results": {}, "overhead": {}}
    for target in rounds[0]:
        runs = sorted((r[target] for r in rounds), key=lambda r: r["result"]["stats"]["p50"])
        chosen = runs[len(runs) // 2]["result"]
        out["results"][target] = {**chosen, "round_p50s": [r[target]["result"]["stats"]["p50"] for r in rounds]}
        if runs[0]["bare"] is not None:
            pairs = [(block_median(r[target]["result"]["times_ms"], BLOCK), r[target]["bare"]) for r in rounds]
            per_round = [100 * (h / b["block_median_ms"] - 1) for h, b in pairs]
            out["overhead"][target] = {
                "runner_block_median_ms": [h for h, _ in pairs],
                "bare_block_median_ms": [b["block_median_ms"] for _, b in pairs],
                "bare_mean_ms": [b["mean_ms"] for _, b in pairs],
                "overhead_pct": per_round,
                "median_overhead_pct": float(np.median(per_round)),
            }
    for target in ("onnxruntime-int8", "openvino-int8"):  # raw images: pre-processing / inference / post split
        out["results"][f"{target} (raw images)"] = _runner(m.artifacts[target], a, m.raw_inputs)
    return out


def _row(name: str, m: BenchModel, target: str, r: dict[str, Any], ref_p50: float) -> str:
    s = r["stats"]
    cells = [
        name,
        f"{m.macs / 1e6:.1f}",
        f"{m.params / 1e6:.3f}",
        target,
        *(f"{s[k]:.3f}" for k in ("p50", "p90", "p99", "mean", "std", "min", "max")),
        f"{s['throughput_ips']:.0f}",
        f"**{ref_p50 / s['p50']:.2f}×**" if target != "torch" else "1.00×",
        f"{r['peak_rss_mb']:.0f}",
        f"{r['model_size_bytes'] / 1e6:.2f}",
        f"{r['load_ms']:.0f} + {r['first_inference_ms']:.1f}",
        " / ".join(f"{v:.3f}" for v in r["round_p50s"]),
    ]
    return "| " + " | ".join(cells) + " |"


def write_markdown(data: dict[str, Any], models: list[BenchModel], path: Path) -> None:
    """bench/results/latency_runtimes.md: one latency table, the harness-overhead table and the pre/infer/post split."""
    head = "| model | MACs M | params M | target | p50 | p90 | p99 | mean | std | min | max | img/s | "
    head += "speed-up vs torch (p50) | peak RSS MB | size MB | load + first ms | p50 per round |"
    lines = [
        "# Latency: runtimes × precisions × models",
        "",
        f"Command: `{data['command']}` ({data['created']}).",
        f"Machine: {data['machine']['cpu']} ({', '.join(data['machine']['cpu_flags'])}), "
        f"{data['machine']['usable_cores']} usable cores, {data['machine']['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + ".",
        f"Settings: batch 1, {data['threads']} thread(s), 20 warm-up calls + 0.5 s, ≥ {data['runs']} timed calls "
        f"and ≥ {data['min_time']} s each, real images (MNIST for the demo widths, foolbox ImageNet samples for "
        "the 224-px student), every timing in its own process. Times in ms. OpenVINO runs with "
        "INFERENCE_PRECISION_HINT=f32 on the CPU (FP16 = FP16-compressed weights). "
        f"Each timing ran in {data['rounds']} interleaved rounds; the row is the round with the median p50. "
        f"1-minute load average during the runs: {data['load_avg_1m_range'][0]:.1f}–{data['load_avg_1m_range'][1]:.1f} "
        f"on {data['machine']['usable_cores']} cores (other processes shared the CPU).",
        "",
        head,
        "|" + "---|" * 17,
    ]
    for m in models:
        res = data["models"][m.name]["results"]
        ref = res["torch"]["stats"]["p50"]
        lines += [_row(m.name, m, t, r, ref) for t, r in res.items() if "raw" not in t]
    lines += [
        "",
        "## Harness overhead",
        "",
        f"Runner (`edgedistill.bench.runner`) vs a bare `for` loop around the same runtime call (same session / "
        f"compiled-model options), each in its own process, in {data['rounds']} interleaved rounds. Statistic: the "
        f"median over blocks of {BLOCK} consecutive calls of the per-call mean (robust to bursts from other "
        "processes). Overhead = runner / bare − 1, per round; the median of the rounds in bold.",
        "",
        "| model | target | runner ms (per round) | bare loop ms (per round) | overhead per round | median overhead |",
        "|---|---|---|---|---|---|",
    ]
    for m in models:
        for t, o in data["models"][m.name]["overhead"].items():
            runner = " / ".join(f"{v:.4f}" for v in o["runner_block_median_ms"])
            bare = " / ".join(f"{v:.4f}" for v in o["bare_block_median_ms"])
            per = " / ".join(f"{v:+.1f}%" for v in o["overhead_pct"])
            lines.append(f"| {m.name} | {t} | {runner} | {bare} | {per} | **{o['median_overhead_pct']:+.1f}%** |")
    lines += [
        "",
        "## Pre-processing / inference / post-processing (raw uint8 images, p50 ms)",
        "",
        "| model | target | pre | infer | post | total p50 |",
        "|---|---|---|---|---|---|",
    ]
    for m in models:
        for t, r in data["models"][m.name]["results"].items():
            if r.get("split"):
                sp = r["split"]
                cells = [f"{sp[k]['p50']:.3f}" for k in ("pre", "infer", "post")]
                lines.append(
                    f"| {m.name} | {t.replace(' (raw images)', '')} | {' | '.join(cells)} | {r['stats']['p50']:.3f} |"
                )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo", help="trained demo run (its bank)")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--mobilenet-width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--reuse", action="store_true", help="time the artifacts already in --work")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every timing")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "latency-bench", help="artifacts go here")
    a = parser.parse_args()
    if a.reuse:
        names = [f"demo-w{w:g}" for w in a.widths] + [f"mobilenet-224-w{a.mobilenet_width:g}"]
        models = [load_model(a.work / n) for n in names]
    else:
        models = [*demo_widths(a.run, a.widths, a.work), mobilenet_224(a.mobilenet_width, a.work)]
    data: dict[str, Any] = {
        "command": "python bench/latency.py " + " ".join(sys.argv[1:]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions(["numpy", "torch", "onnxruntime", "openvino", "nncf"]),
        "threads": a.threads,
        "runs": a.runs,
        "min_time": a.min_time,
        "rounds": a.rounds,
        "targets": ["torch", *TARGETS],
        "models": {},
    }
    for m in models:
        data["models"][m.name] = {"macs": m.macs, "params": m.params, **_time_model(m, a)}
    loads = [r["machine"]["load_avg_1m"] for d in data["models"].values() for r in d["results"].values()]
    data["load_avg_1m_range"] = [min(loads), max(loads)]
    for d in data["models"].values():  # per-call times stay out of the committed JSON (stats only)
        for r in d["results"].values():
            r.pop("times_ms", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency_runtimes.json").write_text(json.dumps(data, indent=1) + "\n")
    write_markdown(data, models, RESULTS / "latency_runtimes.md")
    print(RESULTS / "latency_runtimes.md")


if __name__ == "__main__":
    main()
