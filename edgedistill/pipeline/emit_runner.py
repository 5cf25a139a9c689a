"""`bench --emit-runner DIR`: a self-contained folder to copy to a device and time the artifact there.

The folder holds the torch-free runner (the few stdlib + numpy modules of `edgedistill.bench` it
imports), the artifact with its manifest (and TensorRT build script), a `run.sh`, a requirements
file with the runtime versions the artifact was exported with, and a README.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgedistill.errors import BenchError
from edgedistill.export.manifest import MANIFEST_NAME, read_manifest
from edgedistill.io import atomic_write_text
from edgedistill.options import command, opt
from edgedistill.pipeline.context import run_budget
from edgedistill.pipeline.rundir import RunDir

# Every module `python -m edgedistill.bench.runner` imports (checked by a test that runs the copy alone).
RUNNER_MODULES = (
    "__init__.py",
    "errors.py",
    "registry.py",
    "io.py",
    "bench/__init__.py",
    "bench/runner.py",
    "bench/record.py",
    "bench/machine.py",
    "bench/stats.py",
    "bench/timing.py",
    "bench/runtimes.py",
    "bench/prepost.py",
)
# pip package of each runtime (the device's own build of it may differ, e.g. onnxruntime-gpu, JetPack's tensorrt).
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}

RUN_SH = """#!/bin/sh
# Times the artifact with the torch-free runner; extra arguments go to the runner (--threads, --runs, ...).
set -e
cd "$(dirname "$0")"
exec "${{PYTHON:-python3}}" -m edgedistill.bench.runner artifact --out "${{OUT:-bench-{name}.json}}" {args}"$@"
"""

README = """# Device runner for `{name}` ({runtime} {precision})

On the device: `pip install -r requirements.txt && ./run.sh --threads {threads}` (writes bench-{name}.json)

- `artifact/`: the exported model, its `manifest.json` (sha256 of every file, checked before timing){engine}.
- `edgedistill/`: the torch-free runner (standard library, numpy and the runtime only); `python -m
  edgedistill.bench.runner --help` lists the options (`--runs`, `--min-time`, `--warmup`, `--batch`, `--device`).
- `run.sh`: runs it from this folder; `PYTHON=` picks the interpreter, `OUT=` the result file.
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

    Returns:
        `dest`.

    Raises:
        BenchError: No artifact, or `dest` exists and is not empty.
    """
    if run is None and artifact is None:
        run_opt, artifact_opt = opt("run", "RUN", meta=True), opt("artifact", "DIR", meta=True)
        raise BenchError(f"give {run_opt} (emits the budget's artifact) or {artifact_opt}")
    rd = RunDir(run if run is not None else Path(artifact).parent.parent)  # type: ignore[arg-type]
    if artifact is None:
        resolved = run_budget(rd, budget)
        artifact = rd.export_dir(resolved.recipe.target)
        threads = threads or resolved.budget.target.threads
    if not (Path(artifact) / MANIFEST_NAME).is_file():
        raise BenchError(f"{artifact}: no exported artifact; run `{command('export', run=rd.root)}` first")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BenchError(f"{dest}: exists and is not empty; give a new folder")
    manifest = read_manifest(Path(artifact), verify=True)
    dest.mkdir(parents=True, exist_ok=True)
    _copy_runner(dest)
    for name in [MANIFEST_NAME, *manifest.files]:
        (dest / "artifact" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(artifact) / name, dest / "artifact" / name)
    device_args = "--device gpu " if manifest.runtime == "tensorrt" else ""
    run_sh = dest / "run.sh"
    atomic_write_text(run_sh, RUN_SH.format(name=manifest.name, args=device_args))
    run_sh.chmod(0o755)
    pkg = RUNTIME_PACKAGES.get(manifest.runtime, manifest.runtime)
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
        ),
    )
    return dest
