"""Torch-free device runner: time one exported artifact with its runtime and write a result JSON.

    python -m edgedistill.bench.runner ARTIFACT_DIR [--threads N] [--batch N] [--warmup N] [--runs N]
        [--min-time S] [--input random|calib.npy] [--out FILE]

Needs only the standard library, numpy and the artifact's runtime, so it can be copied to a device
with the artifact. The manifest is read as plain JSON (no pydantic) and the model file's sha256 is
checked before timing. Run one runtime per process: several runtimes in one process distort
few-thread latency.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from edgedistill.bench.machine import package_versions
from edgedistill.bench.record import (
    add_timing_args,
    build_record,
    check_timing_args,
    cli_main,
    make_input,
    write_record,
)
from edgedistill.bench.runtimes import RUNTIMES
from edgedistill.bench.timing import measure
from edgedistill.errors import BenchError
from edgedistill.io import sha256_problem

REQUIRED_KEYS = ("runtime", "precision", "model_file", "files", "input")


def load_artifact(artifact_dir: Path) -> tuple[dict[str, Any], Path]:
    """Read `manifest.json` and return it with the verified model file's path.

    Raises:
        BenchError: Missing directory, manifest, keys or model file, or a sha256 mismatch.
    """
    manifest_path = artifact_dir / "manifest.json"
    if not artifact_dir.is_dir():
        raise BenchError(f"{artifact_dir}: artifact directory not found")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{manifest_path}: manifest not found") from None
    except (OSError, ValueError) as e:
        raise BenchError(f"{manifest_path}: unreadable manifest ({e})") from None
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


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgedistill.bench.runner", description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="artifact directory with manifest.json")
    add_timing_args(parser)
    return parser.parse_args(argv)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    check_timing_args(args)
    manifest, model_path = load_artifact(args.artifact)
    factory = RUNTIMES.get(manifest["runtime"])
    x = make_input(args.input, batch_shape(manifest["input"]["shape"], args.batch))
    timing = measure(
        lambda: partial(factory(model_path, args.threads).run, x),
        warmup=args.warmup,
        runs=args.runs,
        min_time_s=args.min_time,
    )
    name = f"{manifest['runtime']}-{manifest['precision']}-t{args.threads}-b{args.batch}.json"
    record = build_record(
        runtime=manifest["runtime"],
        precision=manifest["precision"],
        artifact=str(args.artifact),
        args=args,
        timing=timing,
        model_size_bytes=model_path.stat().st_size,
        versions=package_versions(["numpy", manifest["runtime"], "edgedistill"]),
    )
    write_record(record, args.out or args.artifact / "bench" / name)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a domain error, shown as one line)."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
