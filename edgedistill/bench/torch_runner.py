"""Torch eager FP32 baseline with the same options and result JSON as the device runner.

    python -m edgedistill.bench.torch_runner SUBNET.safetensors --input-shape 1,3,32,32 [--threads N] ...
    python -m edgedistill.bench.torch_runner --factory my_pkg.nets:build --input-shape 1,3,32,32 ...

A subnet file is loaded with `edgedistill.models.load_subnet`; `--factory MODULE:CALLABLE` instead
builds any `nn.Module` with a zero-argument call (plain models, tests).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from edgedistill.bench.machine import package_versions
from edgedistill.bench.record import (
    add_timing_args,
    build_record,
    check_timing_args,
    cli_main,
    make_input,
    write_record,
)
from edgedistill.bench.runtimes import RuntimeOptions
from edgedistill.bench.timing import Infer, Timing, measure
from edgedistill.bench.torch_model import TorchModel
from edgedistill.errors import BenchError

if TYPE_CHECKING:
    from torch import nn


def _parse_shape(text: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected N,C,H,W positive integers, got '{text}'")
    return dims  # type: ignore[return-value]


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """Resolve `package.module:callable`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BenchError(f"--factory must look like 'package.module:callable', got '{spec}'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise BenchError(f"--factory {spec}: {e}") from None


def _load(args: argparse.Namespace) -> TorchModel:
    options = RuntimeOptions(threads=args.threads, device=args.device)
    if args.factory:
        return TorchModel(None, options, net=load_factory(args.factory)())
    if not args.subnet.is_file():
        raise BenchError(f"{args.subnet}: subnet file not found")
    return TorchModel(args.subnet, options)


def _time(args: argparse.Namespace, shape: tuple[int, ...]) -> tuple[Timing, TorchModel]:
    """Time the model with the registry's `torch` runtime."""
    x = make_input(args.input, shape)
    built: list[TorchModel] = []

    def load() -> Infer:
        built.append(_load(args))
        return partial(built[0].run, x)

    timing = measure(load, warmup=args.warmup, runs=args.runs, min_time_s=args.min_time, warmup_time_s=args.warmup_time)
    return timing, built[0]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edgedistill.bench.torch_runner", description=__doc__.splitlines()[0]
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("subnet", type=Path, nargs="?", help="subnet .safetensors written by edgedistill.models")
    src.add_argument("--factory", help="MODULE:CALLABLE returning an nn.Module (instead of a subnet file)")
    parser.add_argument("--input-shape", type=_parse_shape, required=True, help="N,C,H,W (N is replaced by --batch)")
    add_timing_args(parser)
    return parser.parse_args(argv)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    check_timing_args(args)
    shape = (args.batch, *args.input_shape[1:])
    timing, model = _time(args, shape)
    if args.factory:  # bytes of the parameters and buffers
        size = sum(t.numel() * t.element_size() for t in model.net.state_dict().values())
        artifact, out_dir = args.factory, Path("bench")
    else:
        artifact, size, out_dir = str(args.subnet), args.subnet.stat().st_size, args.subnet.parent / "bench"
    record = build_record(
        runtime="torch",
        precision="fp32",
        artifact=artifact,
        args=args,
        timing=timing,
        model_size_bytes=size,
        versions=package_versions(["numpy", "torch", "edgedistill"]),
        details=model.details,
    )
    write_record(record, args.out or out_dir / f"torch-fp32-t{args.threads}-b{args.batch}.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a domain error, shown as one line)."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
