"""Plain INT8 (no fallback) of trained runs exported for two instruction sets: 7-bit weights (x86 without VNNI) and
8-bit weights (VNNI, ARM dot product), with the accuracy each device would see.

The recipe's `reduce_range: auto` follows the budget's `device.isa`. Each run is copied to a temporary folder and
exported twice with its own budget, `device.isa` set to `avx2` and to `avx512-vnni`. On a machine without VNNI the
8-bit export is scored with Q/DQ run as float ops (the arithmetic of kernels that do not saturate), as `edgedistill
export` does; the 7-bit one with this machine's integer kernels.

Usage: python bench/isa_weights.py --runs runs/demo runs/int8-recovery/lite0-64-s0 [...]
Writes bench/results/isa_weights.{json,md} with the machine's CPU and flags.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from results_io import machine_line, write_results  # bench/, next to this file

from edgedistill.bench.machine import machine_info
from edgedistill.export.manifest import read_manifest
from edgedistill.isa import this_machine_isa
from edgedistill.pipeline.export import export_run

REPO = Path(__file__).resolve().parents[1]
ISAS = ("avx2", "avx512-vnni")


def export_for(run: Path, isa: str, tmp: Path) -> dict[str, Any]:
    """Plain INT8 of a copy of `run` for a device with `isa`: drop, agreement, how it was scored."""
    copy = tmp / f"{run.name}-{isa}"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export", "checkpoint", "report", "bench", "recovery"))
    data = yaml.safe_load((copy / "budget.yaml").read_text())
    data["device"]["isa"] = isa
    data.setdefault("accuracy", {})["max_int8_drop_pts"] = 100.0  # record the plain-PTQ drop, do not refuse it
    recipe = data["target"]["recipe"]
    if not Path(recipe).is_absolute() and "/" in recipe:  # a recipe file next to the run's original budget
        data["target"]["recipe"] = str((run / recipe).resolve())
    budget = tmp / f"{run.name}-{isa}.yaml"
    budget.write_text(yaml.safe_dump(data))
    export_run(copy, budget=budget, precision="int8", sensitivity_images=0)
    m = read_manifest(copy / "export" / "onnxruntime-int8")
    assert m.isa is not None
    return {
        "run": str(run),
        "isa": isa,
        "reduce_range": m.isa.reduce_range,
        "fp32": m.accuracy.fp32,
        "int8": m.accuracy.quantized,
        "drop_pts": m.accuracy.drop_pts,
        "agreement": m.accuracy.agreement,
        "scored": m.notes.get("accuracy_runtime", "ONNX Runtime CPU integer kernels of this machine"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "isa_weights")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="isa-weights-") as tmp:
        for run in args.runs:
            for isa in ISAS:
                rows.append(export_for(run, isa, Path(tmp)))
                r = rows[-1]
                print(f"{run} {isa}: FP32 {r['fp32']:.2f} INT8 {r['int8']:.2f} drop {r['drop_pts']:+.2f}", flush=True)
    m = machine_info()
    command = "python bench/isa_weights.py " + " ".join(sys.argv[1:])
    record = {"command": command, "machine": m, "this_machine_isa": this_machine_isa(), "rows": rows}
    lines = [
        "# Plain INT8 with 7-bit and 8-bit weights (`reduce_range: auto` by the budget's `device.isa`)",
        "",
        f"`{command}` on {machine_line(m)}; ISA {record['this_machine_isa']}. Test top-1 %, no fallback, "
        "the run's own budget (its accuracy guard opened to record the drop) and calibration (300 unlabeled images).",
        "",
        "| run | device.isa | weights | FP32 | INT8 | drop pts | agreement % | scored with |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| `{r['run']}` | {r['isa']} | {'7-bit' if r['reduce_range'] else '8-bit'} | {r['fp32']:.2f} | "
            f"{r['int8']:.2f} | {r['drop_pts']:+.2f} | {r['agreement']:.2f} | {r['scored']} |"
            for r in rows
        ),
        "",
    ]
    write_results(args.out, record, lines)


if __name__ == "__main__":
    main()
