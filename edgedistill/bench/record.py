"""Command-line options, inputs and the result JSON shared by every runner (torch-free)."""

from __future__ import annotations

import argparse
import os
import resource
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.machine import machine_info
from edgedistill.bench.stats import latency_stats
from edgedistill.bench.timing import Timing
from edgedistill.errors import BenchError, EdgedistillError
from edgedistill.io import atomic_write_json


def add_timing_args(parser: argparse.ArgumentParser) -> None:
    """Options every runner takes (threads, batch, warm-up, runs, input, output)."""
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls after the first (default 20)")
    parser.add_argument("--warmup-time", type=float, default=0.0, help="minimum seconds of warm-up (default 0)")
    parser.add_argument("--runs", type=int, default=200, help="minimum timed calls (default 200)")
    parser.add_argument("--min-time", type=float, default=1.0, help="minimum seconds of timed calls (default 1)")
    parser.add_argument(
        "--input",
        default="random",
        help="'random', a float32 .npy of preprocessed NCHW inputs, or a uint8 .npy of raw images "
        "(N,H,W,C or N,C,H,W at the model size; the runner then pre-processes them and times pre/infer/post)",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | tensorrt (ONNX Runtime EPs) | gpu (default cpu)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")


MAX_BATCH = 4096  # images per timed call: a larger batch is a throughput test, and its input may not fit memory
MAX_CALLS = 10**6  # timed calls (--runs) and untimed ones (--warmup)
MAX_SECONDS = 3600  # --min-time, --warmup-time


def max_threads() -> int:
    """The most intra-op threads a run may ask for: 4 per logical CPU (10,000 threads hang the runtime)."""
    return 4 * (os.cpu_count() or 1)


def timing_problem(
    threads: int, batch: int, runs: int, warmup: int, min_time: float, warmup_time: float
) -> tuple[str, str] | None:
    """(option, message) for the first timing value out of bounds, else None; `bench` and every runner check these.

    Checked before anything runs: an infinite `min_time` overflowed inside the runner, 10,000 threads hung it.
    """
    cpus = f" (4 per logical CPU, {os.cpu_count() or 1} here)"
    bounds: dict[str, tuple[float, float, float, str]] = {
        "threads": (threads, 1, max_threads(), cpus),
        "batch": (batch, 1, MAX_BATCH, ""),
        "runs": (runs, 1, MAX_CALLS, ""),
        "warmup": (warmup, 0, MAX_CALLS, ""),
        "min_time": (min_time, 0, MAX_SECONDS, " seconds"),
        "warmup_time": (warmup_time, 0, MAX_SECONDS, " seconds"),
    }
    for name, (value, low, high, unit) in bounds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return name, f"expected {low} to {high}{unit}, got {value}"
    return None


def check_timing_args(args: argparse.Namespace) -> None:
    """Reject counts and times out of bounds (`timing_problem`) with a one-line error naming the option."""
    bad = timing_problem(args.threads, args.batch, args.runs, args.warmup, args.min_time, args.warmup_time)
    if bad:
        raise BenchError(f"--{bad[0].replace('_', '-')}: {bad[1]}")


def load_input(source: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A batch of `shape[0]` inputs: standard-normal float32 noise, or the first rows of a .npy (repeated if short).

    A float .npy must be preprocessed NCHW (returned as float32). A uint8 .npy holds raw images at the
    model size, NCHW or NHWC (returned as is, for `preprocess`).

    Args:
        source: "random" or the path of a .npy array.
        shape: The model input (batch, C, H, W).
        seed: Random seed for "random".
    """
    if source == "random":
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    path = Path(source)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: cannot read input array ({e})") from None
    c, h, w = shape[1:]
    fits = tuple(arr.shape[1:]) == (c, h, w) or (arr.dtype == np.uint8 and tuple(arr.shape[1:]) == (h, w, c))
    if arr.ndim != len(shape) or not fits or len(arr) == 0:
        raise BenchError(f"{path}: input shape {tuple(arr.shape)} does not fit the model input (N, {shape[1:]})")
    idx = np.arange(shape[0]) % len(arr)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr[idx])
    return np.ascontiguousarray(arr[idx], dtype=np.float32)


def make_input(source: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A preprocessed float32 NCHW batch (`load_input`; raw uint8 images are refused: they need a manifest)."""
    x = load_input(source, shape, seed)
    if x.dtype == np.uint8:
        raise BenchError(f"{source}: raw uint8 images need an artifact manifest's preprocessing; give float32 inputs")
    return x


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    Linux: `VmHWM` of /proc/self/status, the high-water mark of this process's own address space.
    `ru_maxrss` is not used there because it survives exec: a runner spawned (vfork) from a large
    parent, e.g. a torch process, would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def build_record(
    *,
    runtime: str,
    precision: str,
    artifact: str,
    args: argparse.Namespace,
    timing: Timing,
    model_size_bytes: int,
    versions: dict[str, str],
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result JSON of one benchmark (see `python -m edgedistill.bench.runner --help`).

    `split` has the pre/infer/post statistics when the runner timed them (raw image input), else null;
    `details` what the runtime reports about itself (providers, device, inference precision).
    """
    return {
        "runtime": runtime,
        "precision": precision,
        "artifact": artifact,
        "device": args.device,
        "threads": args.threads,
        "batch": args.batch,
        "warmup": args.warmup,
        "warmup_time_s": args.warmup_time,
        "runs": args.runs,
        "min_time_s": args.min_time,
        "input": args.input,
        "stats": latency_stats(timing.times_ms, args.batch),
        "split": {k: latency_stats(v, args.batch) for k, v in timing.stage_ms.items()} or None,
        # Every timed call (µs resolution), for histograms and CDFs in `edgedistill report`.
        "times_ms": [round(t, 4) for t in timing.times_ms],
        "details": details or {},
        "load_ms": timing.load_ms,
        "first_inference_ms": timing.first_inference_ms,
        "peak_rss_mb": peak_rss_mb(),
        "model_size_bytes": model_size_bytes,
        "machine": machine_info(),
        "versions": versions,
        # A device runner must not pay torch's import time and memory; recorded so tests and reports can tell.
        "torch_imported": "torch" in sys.modules,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(record: dict[str, Any], out: Path) -> Path:
    """Write the JSON atomically and print its path (the one line a caller parses)."""
    atomic_write_json(out, record)
    print(out)
    return out


def cli_main(body: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a runner's `body`; domain errors become one line on stderr and exit code 2."""
    try:
        return body(argv)
    except EdgedistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
