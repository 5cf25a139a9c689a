"""`bench --widths`: latency of every uniform width of the bank, for the report's accuracy-vs-latency plot.

Each width is extracted as a plain network, exported to FP32 ONNX under `runs/NAME/bench/widths/`
and timed by the torch-free runner with ONNX Runtime in its own process. Accuracy per width comes
from train.json (test top-1 after per-width BN recalibration). Writes `runs/NAME/bench/widths.json`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgedistill.bench.launch import run_isolated
from edgedistill.config import read_json_mapping
from edgedistill.errors import BenchError
from edgedistill.io import atomic_write_json, sha256_file
from edgedistill.options import command, opt


def write_bench_manifest(
    folder: Path, runtime: str, precision: str, model_file: str, shape: list[int], preprocess: dict | None = None
) -> Path:
    """The manifest keys the torch-free runner reads, for a latency-only artifact (no accuracy record).

    `preprocess` (scale, mean, std, channels) lets the runner time raw uint8 images.
    """
    files = sorted(p.name for p in folder.iterdir() if p.suffix in (".onnx", ".xml", ".bin"))
    return atomic_write_json(
        folder / "manifest.json",
        {
            "runtime": runtime,
            "precision": precision,
            "model_file": model_file,
            "files": {f: sha256_file(folder / f) for f in files},
            "input": {"name": "input", "shape": shape},
            **({"preprocess": preprocess} if preprocess else {}),
            "notes": "latency-only artifact; accuracy is not measured on it",
        },
    )


def bench_widths(run: Path, input_chw: tuple[int, int, int], timing_args: list[str], threads: int) -> dict[str, Any]:
    """Time each uniform width of `run`'s bank at FP32 in ONNX Runtime; returns what widths.json holds.

    Args:
        run: The run folder.
        input_chw: The budget's input (channels, height, width).
        timing_args: Runner options (threads, batch, runs, ...).
        threads: Thread count for the runner's environment.

    Raises:
        BenchError: The run has no bank or no per-width accuracies (train.json).
    """
    from edgedistill.export.torch2onnx import torch_to_onnx  # lazy: torch
    from edgedistill.models import count_cost, extract, load_bank

    train_json, bank_path = run / "train.json", run / "bank.safetensors"
    if not train_json.is_file() or not bank_path.is_file():
        raise BenchError(
            f"{run}: {opt('widths')} needs bank.safetensors and train.json; run `{command('train')}` first"
        )
    train = read_json_mapping(train_json, ("width_accuracy",), command("train"))
    accuracy = train.get("width_accuracy") or {}
    if not accuracy:
        raise BenchError(f"{train_json}: no width_accuracy record")
    bank = load_bank(bank_path)
    shape = (1, *input_chw)
    rows = []
    for key, acc in accuracy.items():
        width = float(key)
        net = extract(bank, [width] * bank.num_stages)
        folder = run / "bench" / "widths" / f"w{width:g}"
        torch_to_onnx(net, shape, folder / "model.onnx")  # type: ignore[arg-type]
        write_bench_manifest(folder, "onnxruntime", "fp32", "model.onnx", [-1, *shape[1:]])
        result = run_isolated("edgedistill.bench.runner", [str(folder), *timing_args], threads=threads)
        cost = count_cost(net, shape)  # type: ignore[arg-type]
        rows.append(
            {
                "width": width,
                "label": "onnxruntime fp32",
                "accuracy": acc,
                "macs": cost.macs,
                "params": cost.params,
                "stats": result["stats"],
                "peak_rss_mb": result["peak_rss_mb"],
            }
        )
    record = {"widths": rows, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(run / "bench" / "widths.json", record)
    return record
