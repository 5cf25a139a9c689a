"""The `bench` stage: time the artifact and references, each in its own process; verdict against the budget."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.launch import run_isolated
from edgedistill.bench.pays import int8_speedups
from edgedistill.bench.record import max_threads, timing_problem
from edgedistill.bench.verdict import LimitCheck, accuracy_check, check_budget, overall
from edgedistill.budget import is_auto
from edgedistill.errors import BenchError, ConfigError
from edgedistill.export.manifest import Manifest, read_manifest
from edgedistill.io import atomic_write, atomic_write_json, sha256_file
from edgedistill.options import command, is_cli, opt, param
from edgedistill.run import FP32_TARGET, RunDir, run_budget
from edgedistill.rundir_guard import writes_run


@dataclass(frozen=True)
class BenchOptions:
    """Timing options passed to every runner (see `python -m edgedistill.bench.runner --help`).

    `threads`/`batch` None: the budget's. `input`: "random", "calibration" (real images from the run's
    unlabeled pool; raw uint8 when at the model size, so pre/infer/post are timed) or a .npy path. A value out of
    bounds (`timing_problem`: at most 4 threads per CPU, batch 4096, an hour) is a `ConfigError` naming the option.
    """

    threads: int | None = None
    batch: int | None = None
    runs: int = 200
    warmup: int = 20
    min_time_s: float = 1.0
    warmup_time_s: float = 0.0
    input: str = "random"
    device: str = "cpu"

    def __post_init__(self) -> None:
        bad = timing_problem(
            1 if self.threads is None else self.threads,  # None: the budget's, checked in `bench_run`
            1 if self.batch is None else self.batch,
            self.runs,
            self.warmup,
            self.min_time_s,
            self.warmup_time_s,
        )
        if bad:
            raise ConfigError(f"{param(bad[0])}: {bad[1]}")

    def args(self, threads: int, batch: int, input_path: str) -> list[str]:
        return [
            *("--threads", str(threads), "--batch", str(batch), "--runs", str(self.runs)),
            *("--warmup", str(self.warmup), "--min-time", str(self.min_time_s)),
            *("--warmup-time", str(self.warmup_time_s), "--input", input_path),
        ]


CALIBRATION_IMAGES = 64


def calibration_input(run: Path, manifest: Manifest, out: Path) -> Path:
    """Save real calibration images for the runners: raw uint8 at the model size, else normalised float32."""
    from edgedistill.pipeline.context import load_context  # lazy: loads the task data (and torch)

    ctx = load_context(run)
    raw = ctx.data.calibration(CALIBRATION_IMAGES, seed=0).images
    if tuple(raw.shape[1:]) != tuple(manifest.input.shape[1:]):
        import torch

        raw = ctx.pre(torch.from_numpy(raw)).numpy().astype(np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the temp name
            np.save(f, raw, allow_pickle=False)

    return atomic_write(out, write)


@writes_run("bench")
def bench_run(
    run: Path | None = None,
    *,
    artifact: Path | None = None,
    budget: Path | None = None,
    options: BenchOptions | None = None,
    reference: bool = True,
    widths: bool = False,
) -> dict[str, Any]:
    """Benchmark the budget's artifact (or `artifact`), plus FP32 ONNX and torch eager references.

    The artifact runs on `options.device`; the references on the CPU, and for the INT8-pays comparison also FP32 in
    the artifact's own runtime and device (`fp32_baselines`). Under a `precision: auto` budget (and no `artifact`)
    every exported candidate is timed and the fastest kept one deploys (`bench_candidates`). With `widths`, every
    uniform width of the bank is also timed (`bench_widths`, for the report's accuracy-vs-latency plot).

    Returns:
        The record written to `<artifact>/bench.json`: results per runtime, INT8 speedups, checks and verdict
        (and, under `precision: auto`, the decision, also in `runs/NAME/bench/deployed.json`).
    """
    if run is None and artifact is None:
        run_opt, artifact_opt = opt("run", "RUN", meta=True), opt("artifact", "DIR", meta=True)
        raise BenchError(f"give {run_opt} (benchmarks the budget's artifact) or {artifact_opt}")
    rd = RunDir(run if run is not None else Path(artifact).parent.parent)  # type: ignore[arg-type]
    resolved = run_budget(rd, budget)
    auto = artifact is None and is_auto(resolved.budget)
    opts = options or BenchOptions()
    t = opts.threads or resolved.budget.target.threads
    b = opts.batch or resolved.budget.input.batch
    if t > max_threads():
        flag = opt("threads", "N", meta=True)
        raise ConfigError(f"{resolved.path}: target.threads: {t} is over {max_threads()} for this machine; give {flag}")
    first = rd.export_dir(FP32_TARGET) if auto else Path(artifact or rd.export_dir(resolved.recipe.target))
    if not (first / "manifest.json").is_file():
        raise BenchError(f"{first}: no exported artifact; run `{command('export', run=rd.root)}` first")
    manifest = read_manifest(first, verify=True)
    input_path = opts.input
    if opts.input == "calibration":
        input_path = str(calibration_input(rd.root, manifest, first / "bench" / "calibration-input.npy"))
    args = opts.args(t, b, input_path)
    choice = None
    if auto:
        from edgedistill.pipeline.bench_auto import bench_candidates

        decided = bench_candidates(rd, resolved, args, opts.device, t)
        choice, results, manifest = decided.choice, decided.results, decided.manifest
        target = rd.export_dir(choice.target)
    else:
        target = first
        results = [run_isolated("edgedistill.bench.runner", [str(target), *args, "--device", opts.device], threads=t)]
    if input_path.endswith(".npy") and np.load(input_path, mmap_mode="r", allow_pickle=False).dtype == np.uint8:
        args = opts.args(t, b, "random")  # the references take inputs without the pre-processing step
    if reference:
        for folder, extra in fp32_baselines(rd, manifest, opts.device):
            if not any(_same_timing(r, folder, extra) for r in results):
                results.append(run_isolated("edgedistill.bench.runner", [str(folder), *args, *extra], threads=t))
        subnet = _subnet_for(rd, manifest.source.subnet_sha256)
        if subnet is not None:
            shape = ",".join(str(v) for v in [b, *manifest.input.shape[1:]])
            results.append(
                run_isolated("edgedistill.bench.torch_runner", [str(subnet), "--input-shape", shape, *args], threads=t)
            )
    main = results[0]
    checks = check_budget(
        resolved.budget.limits,
        latency=main["stats"],
        macs=manifest.cost.macs,
        params=manifest.cost.params,
        peak_rss_mb=main["peak_rss_mb"],
    )
    drop = accuracy_check(manifest.precision, manifest.accuracy.drop_pts, resolved.budget.accuracy.max_int8_drop_pts)
    checks += [drop] if drop is not None else []
    record = {
        "budget": resolved.budget.name,
        "artifact": str(target),
        "runtime": manifest.runtime,
        "precision": manifest.precision,
        "accuracy": manifest.accuracy.model_dump(),
        "cost": manifest.cost.model_dump(),
        "results": results,
        "int8_speedup": [s.to_json() for s in int8_speedups(results)],
        "precision_choice": None if choice is None else choice.to_json(),
        "checks": [c.__dict__ for c in checks],
        "verdict": "PASS" if overall(checks) else "FAIL",
        "command": " ".join(["edgedistill", *sys.argv[1:]]) if is_cli() else "edgedistill.bench(...) (Python)",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(Path(target) / "bench.json", record)
    if choice is not None:
        deployed = {"budget": resolved.budget.name, "target": choice.target, "precision": choice.precision}
        atomic_write_json(rd.deployed_json, deployed | {"choice": choice.to_json(), "created": record["created"]})
    if widths:
        from edgedistill.pipeline.bench_widths import bench_widths

        inp = resolved.budget.input
        record["widths"] = bench_widths(rd.root, (inp.channels, inp.height, inp.width), opts.args(t, 1, "random"), t)
    return record


def fp32_baselines(rd: RunDir, manifest: Manifest, device: str) -> list[tuple[Path, list[str]]]:
    """FP32 timings a reduced-precision artifact is compared with: (artifact folder, extra runner arguments).

    Always the FP32 ONNX reference in ONNX Runtime on the CPU; for an ONNX Runtime artifact on another device, the
    same model there; for an OpenVINO artifact, FP32 in OpenVINO with `INFERENCE_PRECISION_HINT=f32` on its device
    (the exported `openvino-fp32` IR when the run has one, else the FP32 ONNX, which OpenVINO converts on load).
    """
    fp32 = rd.export_dir(FP32_TARGET)
    if manifest.precision == "fp32" or not (fp32 / "manifest.json").is_file():
        return []
    read_manifest(fp32, verify=True)
    out: list[tuple[Path, list[str]]] = [(fp32, [])]
    if manifest.runtime == "onnxruntime" and device != "cpu":
        out.append((fp32, ["--device", device]))
    if manifest.runtime == "openvino":
        ir = rd.export_dir("openvino-fp32")
        source = ir if (ir / "manifest.json").is_file() else fp32
        if source == ir:
            read_manifest(ir, verify=True)
        out.append((source, ["--runtime", "openvino", "--hint", "f32", "--device", device]))
    return out


def _same_timing(result: dict[str, Any], folder: Path, extra: list[str]) -> bool:
    """Whether `result` already timed `folder` with the runtime and device `extra` asks for."""
    asked = dict(zip(extra[::2], extra[1::2], strict=True))
    runtime = asked.get("--runtime", read_manifest(folder).runtime)
    same_place = result.get("runtime") == runtime and result.get("device", "cpu") == asked.get("--device", "cpu")
    return same_place and Path(str(result.get("artifact", ""))).resolve() == folder.resolve()


def _subnet_for(rd: RunDir, sha: str) -> Path | None:
    """The subnet file the artifact was exported from (checked by sha256), if it is in the run."""
    candidates = [rd.subnet, *sorted((rd.root / "subnets").glob("*.safetensors"))]
    return next((p for p in candidates if p.is_file() and sha256_file(p) == sha), None)


def checks_of(record: dict[str, Any]) -> list[LimitCheck]:
    """LimitChecks back from a bench record."""
    return [LimitCheck(**c) for c in record["checks"]]
