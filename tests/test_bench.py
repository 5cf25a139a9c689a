"""Latency statistics, budget verdicts, the torch-free device runner, the torch baseline and isolated launches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from edgedistill.bench.launch import run_isolated
from edgedistill.bench.machine import machine_info
from edgedistill.bench.stats import latency_stats
from edgedistill.bench.table import latency_table, verdict_table
from edgedistill.bench.timing import measure
from edgedistill.bench.verdict import check_budget, overall
from edgedistill.budget.spec import LatencyLimit, Limits
from edgedistill.errors import BenchError
from edgedistill.export.manifest import AccuracyInfo, Cost, InputInfo, Manifest, Preprocess, Source, write_manifest
from edgedistill.export.torch2onnx import torch_to_onnx

RUNNER = "edgedistill.bench.runner"
FAST = ["--threads", "1", "--warmup", "2", "--runs", "25", "--min-time", "0"]


def test_latency_stats_known_percentiles() -> None:
    s = latency_stats([float(v) for v in range(100, 0, -1)])  # order must not matter
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert (s["mean"], s["min"], s["max"], s["n"]) == (50.5, 1.0, 100.0, 100)
    assert s["std"] == pytest.approx(np.std(np.arange(1, 101)))
    assert s["throughput_ips"] == pytest.approx(1000 / 50.5)
    assert latency_stats([2.0, 2.0], batch=8)["throughput_ips"] == pytest.approx(4000.0)
    with pytest.raises(ValueError, match="at least one"):
        latency_stats([])


def test_measure_honours_runs_and_min_time() -> None:
    t = measure(lambda: lambda: None, warmup=0, runs=5, min_time_s=0.0)
    assert len(t.times_ms) == 5 and t.load_ms >= 0 and t.first_inference_ms >= 0
    t = measure(lambda: lambda: sum(range(1000)), warmup=1, runs=3, min_time_s=0.02)
    assert len(t.times_ms) >= 3 and sum(t.times_ms) >= 20.0


LIMITS = Limits(latency_ms=LatencyLimit(p90=4.0, p99=8.0), params_m=1.0, macs_m=300, peak_memory_mb=256)


def test_verdict_at_and_over_the_limit() -> None:
    checks = check_budget(
        LIMITS, latency={"p90": 4.0, "p99": 8.0001}, macs=300_000_000, params=1_000_001, peak_rss_mb=100.0
    )
    by_name = {c.name: c for c in checks}
    assert list(by_name) == ["latency p90", "latency p99", "params", "macs", "peak memory"]
    assert by_name["latency p90"].passed and by_name["latency p90"].margin_pct == 0.0  # exactly at the limit
    assert not by_name["latency p99"].passed and by_name["latency p99"].margin_pct < 0
    assert not by_name["params"].passed and by_name["params"].unit == "M"
    assert by_name["macs"].passed
    assert by_name["peak memory"].passed and by_name["peak memory"].margin_pct == pytest.approx(100 * 156 / 256)
    assert not overall(checks)


def test_verdict_missing_measurement_fails_with_a_note() -> None:
    checks = check_budget(LIMITS, latency=None, macs=1, params=1, peak_rss_mb=None)
    missing = [c for c in checks if c.value is None]
    assert {c.name for c in missing} == {"latency p90", "latency p99", "peak memory"}
    assert all(not c.passed and c.note and c.margin_pct is None for c in missing)
    assert not overall(checks)
    assert check_budget(Limits(), latency=None, macs=None, params=None, peak_rss_mb=None) == []
    assert overall([])


def test_tables_render() -> None:
    checks = check_budget(LIMITS, latency={"p90": 1.0, "p99": 2.0}, macs=None, params=10, peak_rss_mb=50.0)
    result = {
        "runtime": "onnxruntime",
        "precision": "int8",
        "threads": 1,
        "batch": 1,
        "peak_rss_mb": 42.0,
        "stats": latency_stats([1.0, 2.0, 3.0]),
    }
    console = Console(record=True, width=200)
    console.print(latency_table([result]))
    console.print(verdict_table(checks))
    text = console.export_text()
    assert "onnxruntime" in text and "PASS" in text and "FAIL (MAC count unknown)" in text


def test_machine_info_is_plain_data() -> None:
    info = machine_info()
    assert info["logical_cores"] >= 1 and info["python"]
    json.dumps(info)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    art = tmp_path_factory.mktemp("artifact") / "onnxruntime-fp32"
    torch_to_onnx(Tiny(), (1, 1, 28, 28), art / "model.onnx")
    manifest = Manifest(
        name="tiny",
        runtime="onnxruntime",
        precision="fp32",
        model_file="model.onnx",
        input=InputInfo(shape=[-1, 1, 28, 28]),
        preprocess=Preprocess(mean=[0.5], std=[0.5], channels=1, height=28, width=28),
        class_names=[str(i) for i in range(10)],
        source=Source(family="tiny", config=[1.0], channels=[4], subnet_sha256="0" * 64),
        opset=18,
        versions={},
        accuracy=AccuracyInfo(split="test", n=1, fp32=10.0),
        cost=Cost(macs=1, params=1),
        created="2025-01-01T00:00:00+00:00",
    )
    write_manifest(art, manifest)
    return art


def test_runner_times_without_torch(artifact: Path) -> None:
    result = run_isolated(RUNNER, [str(artifact), *FAST, "--batch", "3"])
    assert result["torch_imported"] is False
    assert (result["runtime"], result["precision"], result["threads"], result["batch"]) == ("onnxruntime", "fp32", 1, 3)
    assert result["stats"]["n"] >= 25 and result["stats"]["p50"] > 0
    assert result["load_ms"] > 0 and result["first_inference_ms"] > 0
    assert 0 < result["peak_rss_mb"] < 400  # the runner's own peak, not the (torch-sized) parent's
    assert result["model_size_bytes"] == (artifact / "model.onnx").stat().st_size
    assert "onnxruntime" in result["versions"] and result["machine"]["logical_cores"] >= 1


def test_runner_reads_an_input_array_and_default_out(artifact: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "calib.npy", np.ones((2, 1, 28, 28), np.float32))
    result = run_isolated(RUNNER, [str(artifact), *FAST, "--batch", "4", "--input", str(tmp_path / "calib.npy")])
    assert result["stats"]["n"] >= 25 and result["input"].endswith("calib.npy")
    from edgedistill.bench.runner import main

    assert main([str(artifact), *FAST]) == 0
    assert (artifact / "bench" / "onnxruntime-fp32-t1-b1.json").is_file()


def test_runner_errors_are_bench_errors(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="artifact directory not found"):
        run_isolated(RUNNER, [str(tmp_path / "missing"), *FAST])
    np.save(tmp_path / "bad.npy", np.ones((2, 3, 28, 28), np.float32))
    with pytest.raises(BenchError, match="does not fit the model input"):
        run_isolated(RUNNER, [str(artifact), *FAST, "--input", str(tmp_path / "bad.npy")])


def test_runner_rejects_tampered_model_and_unknown_runtime(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgedistill.bench.runner import main

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("model.onnx", "manifest.json"):
        (bad / f).write_bytes((artifact / f).read_bytes())
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "runtime": "onnxruntim"}))
    with pytest.raises(BenchError, match="unknown runtime 'onnxruntim'; did you mean 'onnxruntime'"):
        run_isolated(RUNNER, [str(bad), *FAST])
    with open(bad / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert main([str(bad), *FAST]) == 2  # in-process: exit code 2 and one line on stderr
    err = capsys.readouterr().err.strip()
    assert "model.onnx: sha256 mismatch" in err and "\n" not in err


FACTORY = """
from torch import nn

def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
"""


def test_torch_runner_with_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny_factory.py").write_text(FACTORY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    result = run_isolated(
        "edgedistill.bench.torch_runner",
        ["--factory", "tiny_factory:build", "--input-shape", "1,1,28,28", *FAST, "--batch", "2"],
    )
    assert (result["runtime"], result["precision"], result["batch"]) == ("torch", "fp32", 2)
    assert result["stats"]["n"] >= 25 and result["torch_imported"] is True
    assert result["model_size_bytes"] == 4 * (4 * 9 + 4 + 40 + 10)
    with pytest.raises(BenchError, match="subnet file not found"):
        run_isolated("edgedistill.bench.torch_runner", [str(tmp_path / "x.safetensors"), "--input-shape", "1,1,8,8"])


def test_run_isolated_sets_thread_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "probe_env.py").write_text(
        "import argparse, json, os\n"
        "p = argparse.ArgumentParser(); p.add_argument('--threads'); p.add_argument('--out')\n"
        "json.dump({'omp': os.environ.get('OMP_NUM_THREADS')}, open(p.parse_args().out, 'w'))\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert run_isolated("probe_env", ["--threads", "3"]) == {"omp": "3"}
    assert run_isolated("probe_env", [], threads=2) == {"omp": "2"}
