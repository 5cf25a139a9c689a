"""Layering: the import-linter contracts hold, catch a forbidden import, and light entry points stay torch-free."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
needs_lint_imports = pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter not installed (dev extra)")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@needs_lint_imports
def test_contracts_hold() -> None:
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@needs_lint_imports
@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("report/merge.py", "import torch", "Reports and the run folder module"),
        ("models/cost.py", "from edgedistill.pipeline import train", "Student models import no"),
        ("bench/stats.py", "import pydantic", "The device runner is torch-free"),
        ("export/versions.py", "from edgedistill.distill import losses", "Export imports neither"),
        ("budget/load.py", "import onnx", "Budgets and recipes load"),
        ("search/pareto.py", "import onnxruntime", "Inference backends are imported only"),
        ("pipeline/report.py", "from edgedistill.cli import main", "Nothing imports the command line"),
        ("data/splits.py", "from edgedistill import task", "No import cycles"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    shutil.copytree(REPO / "edgedistill", tmp_path / "edgedistill", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "edgedistill" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _forbidden() -> None:\n    {line}  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    broken = proc.stdout.split("Broken contracts")[-1]
    assert contract in broken, proc.stdout


LIGHT = """
import json, sys, time
t = time.perf_counter()
import edgedistill, edgedistill.report, edgedistill.report.merge, edgedistill.pipeline.report
import edgedistill.budget, edgedistill.run, edgedistill.runtimes, edgedistill.recipe
import edgedistill.cli.budgets, edgedistill.cli.report
print(json.dumps({"heavy": sorted(m for m in ("torch", "timm", "onnx", "onnxruntime", "openvino") if m in sys.modules),
                  "seconds": time.perf_counter() - t}))
"""


def test_report_and_budget_imports_are_torch_free() -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", LIGHT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["heavy"] == []


def test_device_runner_refuses_torch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgedistill.bench.runner import main

    art = tmp_path / "artifact"
    art.mkdir()
    (art / "model.onnx").write_bytes(b"not a model")
    manifest = {
        "runtime": "onnxruntime",
        "precision": "fp32",
        "model_file": "model.onnx",
        "files": {"model.onnx": hashlib.sha256(b"not a model").hexdigest()},
        "input": {"shape": [-1, 1, 28, 28]},
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(art), "--runtime", "torch", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torch-free" in err and "edgedistill.bench.torch_runner" in err
    assert not (tmp_path / "r.json").exists()
