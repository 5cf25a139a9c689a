"""Command-line options, inputs and the result JSON shared by every runner (torch-free)."""

from __future__ import annotations

import argparse
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
    parser.add_argument("--runs", type=int, default=200, help="minimum timed calls (default 200)")
    parser.add_argument("--min-time", type=float, default=1.0, help="minimum seconds of timed calls (default 1)")
    parser.add_argument("--input", default="random", help="'random' or a .npy of preprocessed NCHW inputs")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")


def check_timing_args(args: argparse.Namespace) -> None:
    """Reject non-positive counts with a one-line error."""
    if args.threads < 1 or args.batch < 1 or args.runs < 1 or args.warmup < 0 or args.min_time < 0:
        raise BenchError("need --threads, --batch, --runs >= 1 and --warmup, --min-time >= 0")


def make_input(source: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 NCHW batch: standard-normal noise, or the first rows of a .npy (repeated if short).

    Args:
        source: "random" or the path of a .npy array shaped (N, C, H, W), already normalised.
        shape: Wanted (batch, C, H, W).
        seed: Random seed for "random".
    """
    if source == "random":
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    path = Path(source)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: cannot read input array ({e})") from None
    if arr.ndim != len(shape) or tuple(arr.shape[1:]) != tuple(shape[1:]) or len(arr) == 0:
        raise BenchError(f"{path}: input shape {tuple(arr.shape)} does not fit the model input (N, {shape[1:]})")
    idx = np.arange(shape[0]) % len(arr)
    return np.ascontiguousarray(arr[idx], dtype=np.float32)


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
) -> dict[str, Any]:
    """The result JSON of one benchmark (see `python -m edgedistill.bench.runner --help`)."""
    return {
        "runtime": runtime,
        "precision": precision,
        "artifact": artifact,
        "threads": args.threads,
        "batch": args.batch,
        "warmup": args.warmup,
        "runs": args.runs,
        "input": args.input,
        "stats": latency_stats(timing.times_ms, args.batch),
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
