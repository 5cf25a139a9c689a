"""`bench` under a `precision: auto` budget: time every exported candidate within the accuracy budget, then decide.

Each candidate runs in its own process on the bench device, with the same input, threads and batch; the decision
is `choose_precision` on those timings and the manifests' accuracy drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.bench.choose import PrecisionChoice, choose_precision
from edgedistill.bench.launch import run_isolated
from edgedistill.bench.pays import p50_of, stat_of
from edgedistill.budget import ResolvedBudget, auto_candidates
from edgedistill.errors import BenchError
from edgedistill.export.manifest import Manifest, read_manifest
from edgedistill.options import command
from edgedistill.run import RunDir
from edgedistill.runtimes import DEVICE_RUNNER


@dataclass(frozen=True)
class CandidateBench:
    """The decision and the candidates' results, the deployed one first."""

    choice: PrecisionChoice
    results: list[dict[str, Any]]
    manifest: Manifest  # the deployed artifact's


def candidate_manifests(rd: RunDir, resolved: ResolvedBudget) -> dict[str, tuple[Path, Manifest]]:
    """precision → (artifact folder, verified manifest) of every auto candidate.

    Raises:
        BenchError: A candidate was not exported (naming the command that exports them all).
    """
    out: dict[str, tuple[Path, Manifest]] = {}
    for recipe in auto_candidates(resolved).recipes:
        folder = rd.export_dir(recipe.target)
        if not (folder / "manifest.json").is_file():
            raise BenchError(
                f"{folder}: no {recipe.precision} artifact for the precision auto budget {resolved.budget.name}; "
                f"run `{command('export', run=rd.root)}` first (it exports every candidate)"
            )
        out[recipe.precision] = (folder, read_manifest(folder, verify=True))
    return out


def runner_hint(manifest: Manifest) -> list[str]:
    """OpenVINO FP32 is timed with `INFERENCE_PRECISION_HINT=f32` on every device (the GPU default is f16)."""
    return ["--hint", "f32"] if (manifest.runtime, manifest.precision) == ("openvino", "fp32") else []


def bench_candidates(
    rd: RunDir, resolved: ResolvedBudget, args: list[str], device: str, threads: int
) -> CandidateBench:
    """Time the candidates within the accuracy budget (`args`: the runner's timing arguments) and choose one."""
    candidates = candidate_manifests(rd, resolved)
    max_drop = resolved.budget.accuracy.max_int8_drop_pts
    drops = {p: (None if p == "fp32" else m.accuracy.drop_pts) for p, (_, m) in candidates.items()}
    timed: dict[str, dict[str, Any]] = {}
    for p, (folder, m) in candidates.items():
        drop = drops[p]
        if drop is not None and drop > max_drop:
            continue  # not kept: timing it would not change the decision
        runner_args = [str(folder), *args, "--device", device, *runner_hint(m)]
        timed[p] = run_isolated(DEVICE_RUNNER, runner_args, threads=threads)
    choice = choose_precision(
        {p: p50_of(r) for p, r in timed.items()},
        drops,
        resolved.budget,
        targets={p: folder.name for p, (folder, _) in candidates.items()},
        skipped=auto_candidates(resolved).skipped,
        tails={p: stat_of(r, "p90") for p, r in timed.items()},
    )
    results = [timed[choice.precision], *(r for p, r in timed.items() if p != choice.precision)]
    return CandidateBench(choice, results, candidates[choice.precision][1])
