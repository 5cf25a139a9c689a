"""End to end on a small real run: export (ONNX parity, INT8 QDQ, accuracy guard, calibration refusal) and bench."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.budget.spec import Device
from edgedistill.errors import ExportError
from edgedistill.export.manifest import read_manifest
from edgedistill.isa import budget_isa, seven_bit_weights
from edgedistill.pipeline.export import export_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(trained_run: Path) -> Path:
    export_run(trained_run, precision="int8")
    return trained_run


def test_int8_close_to_fp32(exported: Path) -> None:
    m = read_manifest(exported / "export" / "onnxruntime-int8")
    a = m.accuracy
    assert a.n == 2000 and a.quantized is not None and a.drop_pts is not None
    assert abs(a.drop_pts) <= 2.0, a  # the 60-step session run's allowance (conftest.FIXTURE_MAX_DROP)
    assert a.agreement is not None and a.agreement >= 90.0  # top-1 agreement with FP32 on the undertrained run
    assert m.calibration is not None and m.calibration.count == 300 and len(m.calibration.sha256) == 64
    # device.isa auto on an x86 budget: the weights were cut for this machine's instruction set (any CPU)
    assert m.isa is not None and m.isa.reduce_range == seven_bit_weights(m.isa.isa)
    assert m.isa.isa == budget_isa(Device(family="x86")).isa
    fp32 = read_manifest(exported / "export" / "onnxruntime-fp32")
    assert fp32.accuracy.fp32 == a.fp32 and fp32.source.subnet_sha256 == m.source.subnet_sha256
    assert m.preprocess.mean == [0.1307] and m.input.shape == [-1, 1, 28, 28] and m.budget == "demo-cpu"


def test_int8_graph_is_qdq_uint8_per_channel(exported: Path) -> None:
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(exported / "export" / "onnxruntime-int8" / "model.onnx")).graph
    ops = {n.op_type for n in g.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    q = [n for n in g.node if n.op_type == "QuantizeLinear"]
    assert all(inits[n.input[2]].dtype.name == "uint8" for n in q if len(n.input) > 2 and n.input[2] in inits)
    per_channel = [
        n
        for n in g.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[1]) is not None and inits[n.input[1]].size > 1
    ]
    assert per_channel, "weights should be quantized per output channel"


def test_refuses_tiny_calibration(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    with pytest.raises(ExportError, match="calibration needs ≥ 300 real target images, asked for 50"):
        export_run(run, precision="int8", calibration_samples=50)
    export_run(run, precision="int8", calibration_samples=50, allow_small_calibration=True)
    assert read_manifest(run / "export" / "onnxruntime-int8").calibration.count == 50


def test_accuracy_guard_fails_on_excess_drop(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    budget = re.sub(r"max_int8_drop_pts: [0-9.]+", "max_int8_drop_pts: 0.0", (run / "budget.yaml").read_text())
    (run / "budget.yaml").write_text(budget)
    try:
        export_run(run, precision="int8", calibration_samples=8, allow_small_calibration=True)
    except ExportError as e:  # 8 calibration images usually cost accuracy; the guard must say so in one line
        assert "more than the budget's accuracy.max_int8_drop_pts 0.0" in str(e) and "\n" not in str(e)
    else:
        drop = read_manifest(run / "export" / "onnxruntime-int8").accuracy.drop_pts
        assert drop is not None and drop <= 0.0


def test_accuracy_guard_on_balanced_accuracy(trained_run: Path, tmp_path: Path) -> None:
    """`accuracy.metric: balanced`: the drop is FP32 minus artifact balanced accuracy, and the guard says so."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    text = re.sub(
        r"max_int8_drop_pts: [0-9.]+", "max_int8_drop_pts: 0.0, metric: balanced", (run / "budget.yaml").read_text()
    )
    (run / "budget.yaml").write_text(text)
    try:
        export_run(run, precision="int8", calibration_samples=8, allow_small_calibration=True)
    except ExportError as e:
        assert "INT8 balanced accuracy" in str(e) and "max_int8_drop_pts 0.0" in str(e) and "\n" not in str(e)
    a = read_manifest(run / "export" / "onnxruntime-int8").accuracy
    assert a.metric == "balanced" and a.balanced is not None and a.fp32_balanced is not None
    assert a.drop_pts == pytest.approx(a.fp32_balanced - a.balanced) and len(a.per_class) == 10
    assert a.fp32_balanced == pytest.approx(sum(c.fp32 for c in a.per_class) / 10)


def test_bench_cli_verdict_and_json(exported: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "edgedistill", "bench", "--run", str(exported), "--runs", "50", "--warmup", "5"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "verdict:" in r.stdout
    rec = json.loads((exported / "export" / "onnxruntime-int8" / "bench.json").read_text())
    runtimes = [(x["runtime"], x["precision"]) for x in rec["results"]]
    assert runtimes == [("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("torch", "fp32")]
    for x in rec["results"]:
        assert x["stats"]["n"] >= 50 and x["stats"]["p50"] <= x["stats"]["p90"] <= x["stats"]["p99"]
    assert not rec["results"][0]["torch_imported"]
    assert rec["verdict"] in {"PASS", "FAIL"} and {c["name"] for c in rec["checks"]} >= {"latency p90", "macs"}


def test_bench_missing_artifact_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    r = subprocess.run(
        [sys.executable, "-m", "edgedistill", "bench", "--run", str(run)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 2 and "no exported artifact" in r.stderr and "Traceback" not in r.stderr


def test_second_budget_reuses_the_bank(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    tight = tmp_path / "tight.yaml"
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text()
    text = text.replace("name: demo-cpu", "name: tight").replace("macs_m: 12", "macs_m: 3")
    tight.write_text(text)
    first = json.loads((run / "search.json").read_text())["chosen"]
    int8 = export_run(run, budget=tight, precision="int8")[-1]
    assert (run / "subnets" / "tight.safetensors").is_file() and int8.budget == "tight"
    assert int8.cost.macs <= 3e6 < first["macs"] and int8.source.config != first["config"]
    assert int8.accuracy.drop_pts is not None and abs(int8.accuracy.drop_pts) <= 1.0
