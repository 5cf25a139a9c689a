"""Run one benchmark runner in a fresh process and return its result JSON.

Each runtime is timed in its own process: several runtimes (or torch) in one process distorted
2-thread latency by up to 3x on the reference machine, through competing thread pools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgedistill.errors import BenchError

# Thread pools a runtime may start besides its own setting; pinned so a 1-thread run stays 1 thread.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _threads_from(args: list[str]) -> int | None:
    for i, arg in enumerate(args):
        if arg == "--threads" and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run_isolated(module: str, args: list[str], timeout_s: float = 600, threads: int | None = None) -> dict[str, Any]:
    """Run `python -m module *args --out TMP.json` in a new process and return the parsed JSON.

    Args:
        module: Runner module, e.g. "edgedistill.bench.runner".
        args: Its arguments, without `--out`.
        timeout_s: Kill the process after this many seconds.
        threads: Thread count for the OMP/MKL/OpenBLAS variables; defaults to the `--threads` in `args`.

    Raises:
        BenchError: The process failed (with its last stderr line), timed out or wrote no JSON.
    """
    env = dict(os.environ)
    threads = threads if threads is not None else _threads_from(args)
    if threads is not None:
        env.update({k: str(threads) for k in THREAD_ENV})
    with tempfile.TemporaryDirectory(prefix="edgedistill-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{module} did not finish within {timeout_s:g} s") from None
        if proc.returncode != 0:
            raise BenchError(f"{module} failed (exit {proc.returncode}): {_last_line(proc.stderr)}")
        try:
            return json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BenchError(f"{module} wrote no readable result JSON ({e})") from None
