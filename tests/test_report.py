"""`edgedistill report`: merging a run's JSON with missing parts, plots, verdicts at the limits, CI exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_int8_budget_text

from edgedistill.bench.stats import latency_stats
from edgedistill.pipeline.report import write_report
from edgedistill.report.plots import pareto_front, pareto_points

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _result(artifact: str, runtime: str, precision: str, times: list[float], rss: float = 50.0) -> dict:
    return {
        "runtime": runtime,
        "precision": precision,
        "artifact": artifact,
        "device": "cpu",
        "threads": 1,
        "batch": 1,
        "stats": latency_stats(times),
        "times_ms": times,
        "split": None,
        "peak_rss_mb": rss,
        "model_size_bytes": 1000,
        "load_ms": 5.0,
        "first_inference_ms": 1.0,
        "machine": {"cpu": "test cpu", "usable_cores": 2},
        "versions": {"onnxruntime": "1"},
    }


def synthetic_run(root: Path, main_times: list[float], with_train: bool = True) -> Path:
    """A run folder with the demo budget, one INT8 artifact with its bench.json, and optionally train/widths."""
    run = root / "run"
    (run / "export" / "onnxruntime-int8").mkdir(parents=True)
    (run / "budget.yaml").write_text(demo_int8_budget_text())  # the INT8 artifact is the budget's, not auto's choice
    shutil.copy(REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml", run / "recipe.yaml")
    art = run / "export" / "onnxruntime-int8"
    manifest = {
        "runtime": "onnxruntime",
        "precision": "int8",
        "accuracy": {"split": "test", "n": 100, "fp32": 95.0, "quantized": 94.5, "drop_pts": 0.5},
        "cost": {"macs": 12_000_000, "params": 150_000},  # exactly at the demo budget's limits
        "calibration": {"count": 300},
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    results = [
        _result(str(art), "onnxruntime", "int8", main_times),
        _result(str(run / "export" / "onnxruntime-fp32"), "onnxruntime", "fp32", [0.5, 0.6, 0.7]),
        _result(str(run / "subnet.safetensors"), "torch", "fp32", [2.0, 2.5, 3.0], rss=800.0),
    ]
    (art / "bench.json").write_text(json.dumps({"budget": "demo-cpu", "results": results, "verdict": "PASS"}))
    if with_train:
        train = {"task": "t", "family": "resnet_cifar", "width_accuracy": {"0.5": 90.0, "1.0": 96.0}}
        (run / "train.json").write_text(json.dumps(train))
        widths = [
            {"width": 0.5, "label": "onnxruntime fp32", "accuracy": 90.0, "stats": latency_stats([0.2, 0.3])},
            {"width": 1.0, "label": "onnxruntime fp32", "accuracy": 96.0, "stats": latency_stats([1.5, 1.6])},
        ]
        (run / "bench").mkdir()
        (run / "bench" / "widths.json").write_text(json.dumps({"widths": widths}))
    return run


def test_report_merges_everything_and_renders_plots(tmp_path: Path) -> None:
    times = [0.2] * 9 + [1.0]  # p90 = 0.2 + 0.1 * 0.8 = 0.28 ms (linear interpolation), under the 1 ms limit
    rep = write_report(synthetic_run(tmp_path, times))
    out = tmp_path / "run" / "report"
    assert rep["verdict"] == "PASS" and rep["missing"] == ["search (search.json not found)"]
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["macs"]["passed"] and checks["macs"]["margin_pct"] == 0.0  # exactly at the limit passes
    assert checks["params"]["passed"] and checks["latency p90"]["value"] == pytest.approx(0.28)
    assert checks["peak memory"]["value"] == 50.0  # the artifact's own process, not torch's 800 MB
    for name in ("latency.png", "pareto.png"):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert "**Verdict: PASS**" in md and "![latency histogram" in md and "![accuracy vs latency" in md
    assert "| onnxruntime-fp32 | onnxruntime fp32 |" in md and "| subnet.safetensors | torch fp32 |" in md
    stored = json.loads((out / "report.json").read_text())
    assert all("times_ms" not in r for r in stored["latency"]) and len(stored["latency"]) == 3


def test_report_verdict_just_over_a_limit_and_fail_on_budget(tmp_path: Path) -> None:
    times = [0.2] * 8 + [1.0001, 1.0001]  # p90 interpolates between equal values: exactly 1.0001 ms
    run = synthetic_run(tmp_path, times)
    rep = write_report(run)
    p90 = next(c for c in rep["checks"] if c["name"] == "latency p90")
    assert p90["value"] == pytest.approx(1.0001) and not p90["passed"] and p90["margin_pct"] < 0
    assert rep["verdict"] == "FAIL"
    cmd = [sys.executable, "-m", "edgedistill", "report", str(run)]
    plain = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    gated = subprocess.run([*cmd, "--fail-on-budget"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert plain.returncode == 0 and "verdict: FAIL" in plain.stdout and "report.md" in plain.stdout
    assert gated.returncode == 1


def test_report_tolerates_missing_parts(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint", "teachers", "bench"))
    rep = write_report(run, out=tmp_path / "out")
    assert rep["train"]["width_accuracy"] and rep["search"]["chosen"]
    assert any(m.startswith("export") for m in rep["missing"]) and rep["latency"] == []
    latency = [c for c in rep["checks"] if c["name"].startswith("latency")]
    assert latency and all(not c["passed"] and c["note"] == "latency was not measured" for c in latency)
    assert rep["verdict"] == "FAIL" and not (tmp_path / "out" / "latency.png").exists()
    assert "## Missing parts" in (tmp_path / "out" / "report.md").read_text()
    (run / "budget.yaml").unlink()
    rep = write_report(run, out=tmp_path / "out")
    assert rep["verdict"] == "UNKNOWN" and any(m.startswith("budget") for m in rep["missing"])


def test_report_of_a_missing_run_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edgedistill", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 2 and "run folder not found" in r.stderr and "Traceback" not in r.stderr


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [{"ms": 1.0, "acc": 90.0}, {"ms": 2.0, "acc": 89.0}, {"ms": 3.0, "acc": 95.0}, {"ms": 0.5, "acc": 80.0}]
    assert [p["ms"] for p in pareto_front(pts)] == [0.5, 1.0, 3.0]
    assert pareto_front([]) == [] and np.isfinite(pts[0]["ms"])


@pytest.mark.slow
def test_bench_widths_then_report_end_to_end(trained_run: Path, tmp_path: Path) -> None:
    from edgedistill.pipeline.export import export_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint", "bench"))
    export_run(run, precision="int8")
    fast = ["--runs", "30", "--warmup", "2", "--min-time", "0"]
    bench = [sys.executable, "-m", "edgedistill", "bench", "--run", str(run), "--widths", *fast]
    r = subprocess.run(bench, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "edgedistill", "report", str(run)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((run / "report" / "report.json").read_text())
    assert [w["width"] for w in rep["widths"]["widths"]] == [0.25, 0.5, 0.75, 1.0]
    assert sorted(Path(p).name for p in rep["paths"]["plots"]) == ["latency.png", "pareto.png", "sensitivity.png"]
    assert rep["verdict"] in r.stdout and rep["exports"][-1]["sensitivity"]["layers"]  # the INT8 artifact's report


def test_pareto_points_use_each_artifacts_own_accuracy() -> None:
    stats = latency_stats([1.0, 2.0])
    report = {
        "widths": {"widths": [{"width": 0.5, "label": "onnxruntime fp32", "accuracy": 90.0, "stats": stats}]},
        "exports": [
            {"target": "onnxruntime-fp32", "precision": "fp32", "accuracy": {"fp32": 95.0, "artifact": None}},
            {"target": "onnxruntime-int8", "precision": "int8", "accuracy": {"fp32": 95.0, "quantized": 94.0}},
            {"target": "openvino-int8", "precision": "int8", "accuracy": {"fp32": 95.0, "quantized": 93.0}},
        ],
        "latency": [  # the FP32 reference is timed inside the INT8 artifact's bench.json; openvino not timed
            {"target": "onnxruntime-int8", "timed": "onnxruntime-int8", "precision": "int8", "stats": stats},
            {"target": "onnxruntime-int8", "timed": "onnxruntime-fp32", "precision": "fp32", "stats": stats},
        ],
    }
    got = {(p["label"], p["acc"]) for p in pareto_points(report, "p90")}
    assert got == {("width 0.5 (onnxruntime fp32)", 90.0), ("onnxruntime-fp32", 95.0), ("onnxruntime-int8", 94.0)}


@pytest.mark.parametrize(
    "damage",
    [
        lambda rec: rec["results"][0].update(stats="fast"),
        lambda rec: rec["results"][0].update(times_ms=["slow"]),
        lambda rec: rec.update(results=[5]),
    ],
    ids=["stats not a mapping", "times not numbers", "result not a mapping"],
)
def test_damaged_bench_record_is_listed_not_a_crash(tmp_path: Path, damage: Callable[[dict], None]) -> None:
    run = synthetic_run(tmp_path, [0.2] * 10)
    path = run / "export" / "onnxruntime-int8" / "bench.json"
    record = json.loads(path.read_text())
    damage(record)
    path.write_text(json.dumps(record))
    rep = write_report(run)
    assert any(m.startswith("bench onnxruntime-int8 (unreadable") and "bench.json" in m for m in rep["missing"])
    assert rep["verdict"] == "FAIL" and (run / "report" / "report.md").is_file()  # no timing: the limit is unmet
