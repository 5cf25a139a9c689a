"""Bare-runtime loop: the plainest timing of one model, to measure the benchmark harness's own overhead.

    python -m edgedistill.bench.bare ARTIFACT_DIR [--threads N] [--calls N] [--min-time S] [--input X] [--out FILE]
    python -m edgedistill.bench.bare SUBNET.safetensors --runtime torch --input-shape 1,3,224,224 ...

The model is built exactly as the runner builds it (same session options, OpenVINO config, torch
settings), then a plain `for` loop calls `session.run` / `infer_request.infer` / the module, with
one clock read per block of `--block` calls. The result is the mean per call and the median over
blocks of the per-call mean. The runner's figure over the bare one, minus 1, is the harness
overhead (per-call clock reads, list appends, the `Model.run` wrapper).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.machine import package_versions
from edgedistill.bench.record import cli_main, make_input, peak_rss_mb, write_record
from edgedistill.bench.runner import batch_shape, load_artifact
from edgedistill.bench.runtimes import RUNTIMES, RuntimeOptions
from edgedistill.bench.torch_model import TorchModel  # noqa: F401  (registers the torch reference)
from edgedistill.errors import BenchError


def _bare_call(runtime: str, path: Path, options: RuntimeOptions, x: Any) -> Callable[[], object]:
    """The runtime's own call, without the `Model.run` wrapper (its model class's `bare`)."""
    factory = RUNTIMES.get(runtime)
    if not hasattr(factory, "bare"):
        known = [n for n in RUNTIMES.names() if hasattr(RUNTIMES.get(n), "bare")]
        raise BenchError(f"no bare loop for runtime '{runtime}'; known: {', '.join(known)}")
    return factory(path, options).bare(x)  # type: ignore[attr-defined,no-any-return]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgedistill.bench.bare", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="artifact directory, or a subnet .safetensors with --runtime torch")
    parser.add_argument("--runtime", default=None, help="default: the manifest's")
    parser.add_argument("--input-shape", default=None, help="N,C,H,W for --runtime torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200, help="minimum calls in the timed loop")
    parser.add_argument("--min-time", type=float, default=1.0, help="repeat the loop until this many seconds")
    parser.add_argument("--block", type=int, default=10, help="calls per clock read (default 10)")
    parser.add_argument("--input", default="random", help="'random' or a float32 .npy of NCHW inputs")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    if min(args.threads, args.batch, args.calls, args.block) < 1 or args.warmup < 0 or args.min_time < 0:
        raise BenchError("need --threads, --batch, --calls, --block >= 1 and --warmup, --min-time >= 0")
    options = RuntimeOptions(threads=args.threads)
    if args.runtime == "torch":
        if not args.input_shape:
            raise BenchError("--runtime torch needs --input-shape N,C,H,W")
        runtime, path = "torch", args.model
        shape: tuple[int, ...] = (args.batch, *(int(v) for v in args.input_shape.split(",")[1:]))
    else:
        manifest, path = load_artifact(args.model)
        runtime = args.runtime or manifest["runtime"]
        options = RuntimeOptions(threads=args.threads, precision=manifest["precision"])
        shape = batch_shape(manifest["input"]["shape"], args.batch)
    x = make_input(args.input, shape)
    call = _bare_call(runtime, path, options, x)
    for _ in range(args.warmup):
        call()
    calls, elapsed_ns, blocks = 0, 0, []
    while calls < args.calls or elapsed_ns < args.min_time * 1e9:
        t0 = time.perf_counter_ns()
        for _ in range(args.block):
            call()
        dt = time.perf_counter_ns() - t0
        elapsed_ns += dt
        calls += args.block
        blocks.append(dt / args.block / 1e6)
    record = {
        "runtime": runtime,
        "model": str(args.model),
        "threads": args.threads,
        "batch": args.batch,
        "calls": calls,
        "mean_ms": elapsed_ns / calls / 1e6,
        "block": args.block,
        # Median over blocks of the per-call mean: robust to bursts of other processes on the cores.
        "block_median_ms": float(np.median(blocks)),
        "peak_rss_mb": peak_rss_mb(),
        "versions": package_versions(["numpy", runtime]),
        "torch_imported": "torch" in sys.modules,
    }
    write_record(record, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a domain error, shown as one line)."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
