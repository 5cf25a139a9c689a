"""Torch-free device runner: time one exported artifact with its runtime and write a result JSON.

    python -m edgedistill.bench.runner ARTIFACT_DIR [--runtime NAME] [--device cpu|cuda|tensorrt|gpu]
        [--hint f32|f16|bf16] [--threads N] [--batch N] [--warmup N] [--warmup-time S] [--runs N]
        [--min-time S] [--input random|inputs.npy|images_uint8.npy] [--budget budget.json] [--out FILE]

Needs only the standard library, numpy and the artifact's runtime, so it can be copied to a device
with the artifact. The manifest is read as plain JSON (no pydantic) and the model file's sha256 is
checked before timing. Runtimes: onnxruntime, openvino, tensorrt (see `runtimes.py`; torch is refused). Raw uint8
images as `--input` are pre-processed per call with the manifest's preprocessing, and the result
splits pre-processing, inference and post-processing (softmax, top-1). Run one runtime per process:
several runtimes in one process distort few-thread latency. It prints the latency table and, with
`--budget` (the JSON `bench --emit-runner` writes), the PASS/FAIL of every limit, then the result path.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.machine import package_versions
from edgedistill.bench.plain import latency_text, verdict_text
from edgedistill.bench.prepost import make_preprocess, postprocess
from edgedistill.bench.record import (
    add_timing_args,
    build_record,
    check_timing_args,
    cli_main,
    load_input,
    write_record,
)
from edgedistill.bench.runtimes import RUNTIMES, Model, RuntimeOptions
from edgedistill.bench.timing import Stages, Timing, measure, measure_stages
from edgedistill.bench.verdict import check_limits, overall
from edgedistill.errors import BenchError
from edgedistill.io import sha256_problem
from edgedistill.runtimes import DEVICE_RUNNER, RUNTIME_SPECS

REQUIRED_KEYS = ("runtime", "precision", "model_file", "files", "input")
LIMIT_KEYS = {"latency_ms", "params_m", "macs_m", "peak_memory_mb"}
LATENCY_KEYS = {"p50", "p90", "p99", "mean"}


def _read_json(path: Path, what: str, unreadable: str) -> Any:
    """Parsed JSON of `path`; a missing or unparsable file is a `BenchError` naming it (`what`, `unreadable`)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: unreadable {unreadable} ({e})") from None


def load_artifact(artifact_dir: Path) -> tuple[dict[str, Any], Path]:
    """Read `manifest.json` and return it with the verified model file's path.

    Raises:
        BenchError: Missing directory, manifest, keys or model file, or a sha256 mismatch.
    """
    manifest_path = artifact_dir / "manifest.json"
    if not artifact_dir.is_dir():
        raise BenchError(f"{artifact_dir}: artifact directory not found")
    manifest = _read_json(manifest_path, "manifest", "manifest")
    if not isinstance(manifest, dict):
        raise BenchError(f"{manifest_path}: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing or not isinstance(manifest["input"], dict) or "shape" not in manifest["input"]:
        raise BenchError(f"{manifest_path}: missing keys {', '.join(missing) or 'input.shape'}")
    model_file = manifest["model_file"]
    expected = manifest["files"].get(model_file)
    if expected is None:
        raise BenchError(f"{manifest_path}: no sha256 recorded for the model file {model_file}")
    model_path = artifact_dir / model_file
    problem = sha256_problem(model_path, expected)
    if problem:
        raise BenchError(problem)
    return manifest, model_path


def batch_shape(manifest_shape: list[int], batch: int) -> tuple[int, ...]:
    """The input shape for `batch`; a fixed batch in the manifest must match."""
    fixed = manifest_shape[0]
    if fixed not in (-1, None, batch):
        raise BenchError(f"the model has a fixed batch of {fixed}; got --batch {batch}")
    return (batch, *manifest_shape[1:])


def check_runtime(runtime: str) -> None:
    """Refuse a runtime this runner does not time (torch: it would import torch here).

    Raises:
        BenchError: naming the runner that times it.
    """
    spec = RUNTIME_SPECS.get(runtime)
    if spec is not None and spec.bench_runner != DEVICE_RUNNER:
        raise BenchError(
            f"--runtime {runtime}: the device runner is torch-free and does not time {runtime}; "
            f"use python -m {spec.bench_runner}"
        )


def model_file_for(runtime: str, manifest: dict[str, Any], artifact_dir: Path, model_path: Path) -> Path:
    """The file `runtime` loads: the manifest's model file, or for TensorRT the engine built on the device.

    Raises:
        BenchError: TensorRT without an engine (the build script has not been run here).
    """
    if runtime != "tensorrt":
        return model_path
    engine = (manifest.get("engine") or {}).get("file") or "model.engine"
    path = artifact_dir / engine
    if not path.is_file():
        raise BenchError(f"{path}: no TensorRT engine; run ./build_engine.sh in {artifact_dir} on this device first")
    return path


def load_budget_limits(path: Path) -> tuple[str, dict[str, Any]]:
    """The budget name and limits from a budget JSON: `{"name": ..., "limits": {"latency_ms": {"p90": 2.0}, ...}}`.

    Raises:
        BenchError: Missing or unreadable file, unknown keys, or a limit that is not a finite number > 0 (or null).
    """
    data = _read_json(path, "budget file", "budget JSON")
    limits = data.get("limits") if isinstance(data, dict) else None
    latency = (limits.get("latency_ms") or {}) if isinstance(limits, dict) else None
    if not isinstance(limits, dict) or not isinstance(latency, dict):
        raise BenchError(
            f"{path}: expected {{'name': ..., 'limits': {{'latency_ms': {{'p90': MS}}, 'params_m': ...}}}}"
        )
    unknown = sorted(set(limits) - LIMIT_KEYS) + sorted(set(latency) - LATENCY_KEYS)
    if unknown:
        raise BenchError(f"{path}: unknown limits {', '.join(unknown)}")
    values = [*latency.values(), *(v for k, v in limits.items() if k != "latency_ms")]
    if any(v is not None and (type(v) not in (int, float) or not math.isfinite(v) or v <= 0) for v in values):
        raise BenchError(f"{path}: every limit must be a finite number > 0, or null")
    return str(data.get("name", path.stem)), limits


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgedistill.bench.runner", description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="artifact directory with manifest.json")
    parser.add_argument("--runtime", default=None, help="time with this runtime (default: the manifest's)")
    parser.add_argument("--hint", default=None, help="OpenVINO inference precision: f32 | f16 | bf16")
    parser.add_argument("--budget", type=Path, default=None, help="budget JSON: print PASS/FAIL of every limit")
    add_timing_args(parser)
    return parser.parse_args(argv)


def _timing(args: argparse.Namespace, manifest: dict[str, Any], runtime: str, model_path: Path) -> tuple[Timing, Any]:
    """Time the model; raw uint8 input is timed as pre-processing, inference and post-processing stages."""
    factory = RUNTIMES.get(runtime)
    options = RuntimeOptions(args.threads, args.device, manifest["precision"], args.hint)
    x = load_input(args.input, batch_shape(manifest["input"]["shape"], args.batch))
    loaded: list[Model] = []

    def load() -> Model:
        loaded.append(factory(model_path, options))
        return loaded[0]

    counts = {"warmup": args.warmup, "runs": args.runs, "min_time_s": args.min_time, "warmup_time_s": args.warmup_time}
    if x.dtype != np.uint8:
        return measure(lambda: partial(load().run, x), **counts), loaded[0]
    pre = make_preprocess(manifest["preprocess"])

    def stages() -> Stages:
        model = load()
        return [("pre", lambda _: pre(x)), ("infer", model.run), ("post", postprocess)]

    return measure_stages(stages, **counts), loaded[0]


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    check_timing_args(args)
    budget = None if args.budget is None else load_budget_limits(args.budget)  # a bad file fails before timing
    manifest, model_path = load_artifact(args.artifact)
    runtime = args.runtime or manifest["runtime"]
    check_runtime(runtime)
    model_path = model_file_for(runtime, manifest, args.artifact, model_path)
    timing, model = _timing(args, manifest, runtime, model_path)
    device = "" if args.device == "cpu" else f"-{args.device}"
    name = f"{runtime}-{manifest['precision']}{device}-t{args.threads}-b{args.batch}.json"
    record = build_record(
        runtime=runtime,
        precision=manifest["precision"],
        artifact=str(args.artifact),
        args=args,
        timing=timing,
        model_size_bytes=sum(p.stat().st_size for p in _model_files(model_path)),
        versions=package_versions(["numpy", runtime, "edgedistill"]),
        details=model.details,
    )
    print(latency_text([record]))
    if budget is not None:
        print(_judge(record, manifest, *budget))
    write_record(record, args.out or args.artifact / "bench" / name)
    return 0


def _judge(record: dict[str, Any], manifest: dict[str, Any], budget: str, limits: dict[str, Any]) -> str:
    """Check the budget's limits, add the checks and verdict to `record` under "budget"; returns the verdict text."""
    cost = manifest.get("cost") or {}
    measured = {"macs": cost.get("macs"), "params": cost.get("params"), "peak_rss_mb": record["peak_rss_mb"]}
    checks = check_limits(limits, latency=record["stats"], **measured)
    verdict = "PASS" if overall(checks) else "FAIL"
    record["budget"] = {"name": budget, "checks": [c.__dict__ for c in checks], "verdict": verdict}
    return verdict_text(checks, budget)


def _model_files(model_path: Path) -> list[Path]:
    """The model file and, for an OpenVINO IR, its weights (`.bin`)."""
    weights = model_path.with_suffix(".bin")
    return [model_path, weights] if model_path.suffix == ".xml" and weights.is_file() else [model_path]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a domain error, shown as one line)."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
