"""`bench --emit-runner DIR`: a self-contained folder to copy to a device and time the artifact there.

The folder holds the torch-free runner (the few stdlib + numpy modules of `edgedistill.bench` it
imports), the artifact with its manifest (and TensorRT build script), the budget's limits as plain
JSON (when there is a budget), a `run.sh` that prints the latency table and the PASS/FAIL of every
limit, a requirements file with the runtime versions the artifact was exported with, and a README.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgedistill.errors import BenchError
from edgedistill.export.manifest import MANIFEST_NAME, read_manifest
from edgedistill.io import atomic_write_json, atomic_write_text
from edgedistill.options import command, opt, param
from edgedistill.outputs import check_output_dir, claim_dir
from edgedistill.run import RunDir, budget_target, run_budget
from edgedistill.runtimes import DEVICE_RUNNER, RUNTIME_SPECS

# Every module `python -m edgedistill.bench.runner` imports (checked by a test that runs the copy alone).
RUNNER_MODULES = (
    "__init__.py",
    "errors.py",
    "registry.py",
    "io.py",
    "runtimes.py",
    "bench/__init__.py",
    "bench/runner.py",
    "bench/record.py",
    "bench/machine.py",
    "bench/stats.py",
    "bench/timing.py",
    "bench/runtimes.py",
    "bench/prepost.py",
    "bench/verdict.py",
    "bench/plain.py",
)
BUDGET_JSON = "budget.json"

RUN_SH = """#!/bin/sh
# Times the artifact with the torch-free runner, prints the latency table (and with budget.json the PASS/FAIL
# of every limit) and writes the result JSON; extra arguments go to the runner (--threads, --runs, ...).
set -e
cd "$(dirname "$0")"
exec "${{PYTHON:-python3}}" -m edgedistill.bench.runner artifact --out "${{OUT:-bench-{name}.json}}" {args}"$@"
"""

README = """# Device runner for `{name}` ({runtime} {precision})

On the device: `pip install -r requirements.txt && ./run.sh --threads {threads}` (writes bench-{name}.json)

It prints the p50/p90/p99 latency table{judged}.

- `artifact/`: the exported model, its `manifest.json` (sha256 of every file, checked before timing){engine}.
- `edgedistill/`: the torch-free runner (standard library, numpy and the runtime only); `python -m
  edgedistill.bench.runner --help` lists the options (`--runs`, `--min-time`, `--warmup`, `--batch`, `--device`).
{budget}- `run.sh`: runs it from this folder; `PYTHON=` picks the interpreter, `OUT=` the result file.
- Copy the result JSON back and read it with `edgedistill report` next to the run, or as plain JSON.
"""


def _copy_runner(dest: Path) -> None:
    package = Path(__file__).resolve().parents[1]
    for rel in RUNNER_MODULES:
        target = dest / "edgedistill" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / rel, target)


def emit_runner(
    dest: Path,
    *,
    run: Path | None = None,
    artifact: Path | None = None,
    budget: Path | None = None,
    threads: int | None = None,
) -> Path:
    """Write the device-runner folder for the budget's artifact of `run` (or for `artifact`).

    The budget (`budget`, else the run's when there is one) goes along as `budget.json`, so `run.sh` judges
    its limits on the device; MACs and parameters come from the manifest.

    Returns:
        `dest`.

    Raises:
        BenchError: No artifact, or `dest` exists and is not empty.
    """
    if run is None and artifact is None:
        run_opt, artifact_opt = opt("run", "RUN", meta=True), opt("artifact", "DIR", meta=True)
        raise BenchError(f"give {run_opt} (emits the budget's artifact) or {artifact_opt}")
    rd = RunDir(run if run is not None else Path(artifact).parent.parent)  # type: ignore[arg-type]
    resolved = None
    if artifact is None or budget is not None or rd.budget.is_file():
        resolved = run_budget(rd, budget)
        threads = threads or resolved.budget.target.threads
    if artifact is None:
        assert resolved is not None
        deployed = budget_target(rd, resolved)
        if deployed is None:
            raise BenchError(
                f"budget {resolved.budget.name} has precision auto; run `{command('bench', run=rd.root)}` first "
                f"(it chooses the artifact) or give {opt('artifact', 'DIR', meta=True)}"
            )
        artifact = rd.export_dir(deployed)
    if not (Path(artifact) / MANIFEST_NAME).is_file():
        raise BenchError(f"{artifact}: no exported artifact; run `{command('export', run=rd.root)}` first")
    dest = Path(dest)
    check_output_dir(dest, param("emit_runner"))
    if dest.is_dir() and any(dest.iterdir()):  # even an earlier runner folder: results and notes may live there
        raise BenchError(f"{dest}: --emit-runner folder exists and is not empty; give a new folder")
    manifest = read_manifest(Path(artifact), verify=True)  # regular files, hashes and content, before any write
    spec = RUNTIME_SPECS[manifest.runtime]
    if spec.bench_runner != DEVICE_RUNNER:
        raise BenchError(f"{artifact}: runtime {manifest.runtime} is not timed by the device runner")
    claim_dir(dest, "runner")
    _copy_runner(dest)
    for name in [MANIFEST_NAME, *manifest.files]:
        (dest / "artifact" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(artifact) / name, dest / "artifact" / name, follow_symlinks=False)
    device_args = "" if spec.runner_device == "cpu" else f"--device {spec.runner_device} "
    judged = ""
    if resolved is not None:
        limits = {"name": resolved.budget.name, "limits": resolved.budget.limits.model_dump(mode="json")}
        atomic_write_json(dest / BUDGET_JSON, limits)
        device_args = f"--budget {BUDGET_JSON} {device_args}"
        judged = f" and the PASS/FAIL of every limit of the budget `{resolved.budget.name}`"
    run_sh = dest / "run.sh"
    atomic_write_text(run_sh, RUN_SH.format(name=manifest.name, args=device_args))
    run_sh.chmod(0o755)
    pkg = spec.package  # the device's own build of it may differ (onnxruntime-gpu, JetPack's tensorrt)
    pins = [f"numpy=={manifest.versions['numpy']}" if "numpy" in manifest.versions else "numpy"]
    pins.append(f"{pkg}=={manifest.versions[pkg]}" if pkg in manifest.versions else pkg)
    atomic_write_text(dest / "requirements.txt", "\n".join(pins) + "\n")
    engine = ""
    if manifest.engine is not None:
        engine = f"; build the engine first with `cd artifact && ./{manifest.engine.build_script}`"
    atomic_write_text(
        dest / "README.md",
        README.format(
            name=manifest.name,
            runtime=manifest.runtime,
            precision=manifest.precision,
            threads=threads or 1,
            engine=engine,
            judged=judged,
            budget=f"- `{BUDGET_JSON}`: the budget's limits, judged by `run.sh`.\n" if resolved is not None else "",
        ),
    )
    return dest
