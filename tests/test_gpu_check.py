"""The prepared GPU check (`bench/gpu_check.py`) runs end to end on the CPU in its dry mode and writes every field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_dry_run_writes_every_part(tmp_path: Path) -> None:
    r = _run("--dry-run", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rec["dry_run"] is True and rec["machine"]["device"] == "cpu"
    assert rec["machine"]["torch"] == torch.__version__ and rec["machine"]["torch_pin"].startswith("torch==")
    assert set(rec["parts"]) == {"amp_training", "resume", "teacher_cache", "ort_cuda"} == set(rec["seconds"])
    assert not [name for name, part in rec["parts"].items() if "error" in part], rec["parts"]
    for name in rec["parts"]:
        assert f"{name}: " in r.stdout  # each part's time is printed as it finishes
    amp = rec["parts"]["amp_training"]
    assert amp["edgedistill_images_per_s"] > 0 and amp["bare_timm_images_per_s"] > 0
    assert amp["ratio"] == pytest.approx(amp["edgedistill_images_per_s"] / amp["bare_timm_images_per_s"])
    assert amp["meets_goal"] == (amp["ratio"] >= amp["goal"] == 0.8)
    assert rec["parts"]["resume"]["bitwise_identical"] is True  # CPU resume is bitwise already
    cache = rec["parts"]["teacher_cache"]["ccexam:usps"]
    assert cache["features_max_abs_diff"] == 0.0 and cache["top1_agreement"] == 1.0  # both paths on the CPU here
    ort = rec["parts"]["ort_cuda"]
    if not ort["available"]:
        assert "CUDAExecutionProvider" in ort["why"]
    md = (tmp_path / "gpu_check.md").read_text()
    assert md.startswith("# GPU check (CPU dry run: not a measurement)") and "| amp_training |" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_only_the_dry_run_runs(tmp_path: Path) -> None:
    r = _run("--out", str(tmp_path))
    assert r.returncode == 2 and "no CUDA device visible" in r.stderr and "--dry-run" in r.stderr
    assert not (tmp_path / "gpu_check.json").exists()
