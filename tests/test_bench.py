"""Latency statistics, budget verdicts, the torch-free device runner, the torch baseline and isolated launches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from torch import nn

from edgedistill.bench.launch import run_isolated
from edgedistill.bench.machine import machine_info
from edgedistill.bench.prepost import make_preprocess, postprocess
from edgedistill.bench.stats import latency_stats
from edgedistill.bench.table import latency_table, verdict_table
from edgedistill.bench.timing import measure, measure_stages
from edgedistill.bench.verdict import accuracy_check, check_budget, overall
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


def test_an_artifact_the_accuracy_guard_refused_fails_the_verdict() -> None:
    # The 224-px flagship's INT8 export dropped 53.8 pts; its manifest was written and bench once said PASS.
    bad = accuracy_check("int8", 53.8, 1.0)
    assert bad is not None and not bad.passed and bad.name == "int8 drop" and bad.unit == "pts"
    ok = accuracy_check("int8", -0.04, 1.0)
    assert ok is not None and ok.passed and not overall([ok, bad])
    assert accuracy_check("fp32", None, 1.0) is None
    missing = accuracy_check("fp16", None, 1.0)
    assert missing is not None and not missing.passed and "not measured" in missing.note


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


def test_measure_stages_split_and_warmup_time() -> None:
    calls = []

    def stages() -> list:
        return [("pre", lambda _: calls.append(1) or 2), ("infer", lambda v: v * 3), ("post", lambda v: v + 1)]

    t = measure_stages(stages, warmup=0, runs=7, min_time_s=0.0, warmup_time_s=0.02)
    assert set(t.stage_ms) == {"pre", "infer", "post"}
    assert all(len(v) == len(t.times_ms) == 7 for v in t.stage_ms.values())
    for i, total in enumerate(t.times_ms):
        assert total == pytest.approx(sum(v[i] for v in t.stage_ms.values()))
    assert len(calls) > 8  # the first call, >= 20 ms of warm-up calls, then 7 timed calls
    with pytest.raises(ValueError, match="warmup_time_s"):
        measure(lambda: lambda: None, warmup_time_s=-1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.001, 1e4, allow_nan=False), min_size=1, max_size=300))
def test_latency_stats_are_ordered(times: list[float]) -> None:
    s = latency_stats(times)
    tol = 1e-9 * max(times)
    assert s["min"] - tol <= s["p50"] <= s["p90"] + tol <= s["p99"] + 2 * tol <= s["max"] + 3 * tol
    assert s["min"] - tol <= s["mean"] <= s["max"] + tol and s["std"] >= 0 and s["n"] == len(times)


def test_preprocess_matches_the_manifest_formula() -> None:
    raw = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)  # NHWC
    pre = make_preprocess({"scale": 1 / 255, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 2.0], "channels": 3})
    want = (raw.transpose(0, 3, 1, 2) / 255 - np.array([0.1, 0.2, 0.3]).reshape(1, 3, 1, 1)) / np.array(
        [0.5, 0.25, 2.0]
    ).reshape(1, 3, 1, 1)
    got = pre(raw)
    assert got.dtype == np.float32 and got.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    top, prob = postprocess([np.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]], np.float32)])
    assert top.tolist() == [1, 0] and np.all((prob > 0.5) & (prob < 1))


def test_runner_times_raw_images_as_pre_infer_post(artifact: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "raw.npy", np.full((3, 28, 28, 1), 128, np.uint8))
    result = run_isolated(RUNNER, [str(artifact), *FAST, "--input", str(tmp_path / "raw.npy"), "--batch", "2"])
    split = result["split"]
    assert set(split) == {"pre", "infer", "post"} and all(split[k]["n"] == result["stats"]["n"] for k in split)
    assert result["stats"]["mean"] == pytest.approx(sum(split[k]["mean"] for k in split), rel=1e-6)
    assert len(result["times_ms"]) == result["stats"]["n"] and result["torch_imported"] is False


def test_runner_refuses_missing_devices_and_engines(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="onnxruntime has no device 'gpu'"):
        run_isolated(RUNNER, [str(artifact), *FAST, "--device", "gpu"])
    with pytest.raises(BenchError, match="no TensorRT engine; run ./build_engine.sh"):
        run_isolated(RUNNER, [str(artifact), *FAST, "--runtime", "tensorrt", "--device", "gpu"])
    with pytest.raises(BenchError, match="unknown runtime 'openvin'; did you mean 'openvino'"):
        run_isolated(RUNNER, [str(artifact), *FAST, "--runtime", "openvin"])


@pytest.fixture(scope="module")
def openvino_artifact(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgedistill.export.manifest import read_manifest
    from edgedistill.export.onnx2openvino import convert_openvino

    art = tmp_path_factory.mktemp("ov") / "openvino-fp32"
    convert_openvino(artifact / "model.onnx", art, fp16=False)
    base = read_manifest(artifact)
    files = {"model.xml": "", "model.bin": ""}
    write_manifest(art, base.model_copy(update={"runtime": "openvino", "model_file": "model.xml", "files": files}))
    return art


def test_openvino_runtime_times_an_exported_artifact(openvino_artifact: Path) -> None:
    result = run_isolated(RUNNER, [str(openvino_artifact), *FAST, "--batch", "2"])
    assert (result["runtime"], result["precision"], result["batch"]) == ("openvino", "fp32", 2)
    assert result["details"]["inference_precision"] == "f32"  # never OpenVINO's bf16 default for an FP32 baseline
    assert result["details"]["config"]["INFERENCE_NUM_THREADS"] == "1"
    assert result["torch_imported"] is False and result["stats"]["n"] >= 25
    xml, weights = openvino_artifact / "model.xml", openvino_artifact / "model.bin"
    assert result["model_size_bytes"] == xml.stat().st_size + weights.stat().st_size
    assert "openvino" in result["versions"]


def test_bare_loop_matches_the_runner_call(artifact: Path, openvino_artifact: Path, tmp_path: Path) -> None:
    for art in (artifact, openvino_artifact):
        bare = run_isolated("edgedistill.bench.bare", [str(art), "--calls", "20", "--min-time", "0", "--warmup", "2"])
        assert bare["calls"] >= 20 and bare["mean_ms"] > 0 and bare["torch_imported"] is False


PROBE = """
import json, runpy, sys
sys.argv = ["runner", "artifact", *{fast!r}, "--out", "result.json"]
try:
    runpy.run_module("edgedistill.bench.runner", run_name="__main__")
except SystemExit as e:
    code = e.code
import edgedistill
print(json.dumps({{"code": code, "file": edgedistill.__file__, "torch": "torch" in sys.modules,
                  "pydantic": "pydantic" in sys.modules}}))
"""


def test_emit_runner_folder_runs_alone_without_torch(artifact: Path, tmp_path: Path) -> None:
    from edgedistill.pipeline.emit_runner import RUNNER_MODULES, emit_runner

    dest = emit_runner(tmp_path / "device", artifact=artifact, threads=1)
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert files == {
        ".edgedistill.json",
        "README.md",
        "run.sh",
        "requirements.txt",
        "artifact/manifest.json",
        "artifact/model.onnx",
        *(f"edgedistill/{m}" for m in RUNNER_MODULES),
    }
    assert "./run.sh --threads 1" in (dest / "README.md").read_text()
    assert (dest / "requirements.txt").read_text().splitlines()[1].startswith("onnxruntime")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(fast=FAST)], cwd=dest, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0 and Path(probe["file"]).resolve() == (dest / "edgedistill" / "__init__.py").resolve()
    assert probe["torch"] is False and probe["pydantic"] is False
    assert json.loads((dest / "result.json").read_text())["stats"]["n"] >= 25
    with pytest.raises(BenchError, match="not empty"):
        emit_runner(dest, artifact=artifact)


BUDGET_YAML = """name: tiny-device
description: a budget the tiny model passes on p50 and params and cannot pass on p99
device: {{family: x86}}
target: {{runtime: onnxruntime, precision: fp32, recipe: {recipe}, threads: 1}}
input: {{height: 28, width: 28, channels: 1}}
limits:
  latency_ms: {{p50: 10000, p99: 0.000001}}
  params_m: 1
"""


def test_emitted_run_sh_prints_the_latency_table_and_the_verdict(artifact: Path, tmp_path: Path) -> None:
    from edgedistill.bench.plain import LATENCY_COLUMNS
    from edgedistill.pipeline.emit_runner import emit_runner

    recipe = Path(__file__).resolve().parents[1] / "edgedistill" / "resources" / "recipes" / "onnx-fp32.yaml"
    (tmp_path / "budget.yaml").write_text(BUDGET_YAML.format(recipe=recipe))
    dest = emit_runner(tmp_path / "device", artifact=artifact, budget=tmp_path / "budget.yaml")
    assert json.loads((dest / "budget.json").read_text())["limits"]["latency_ms"]["p99"] == 0.000001
    assert "--budget budget.json" in (dest / "run.sh").read_text()
    assert "PASS/FAIL of every limit of the budget `tiny-device`" in (dest / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    proc = subprocess.run(
        ["./run.sh", *FAST], cwd=dest, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == " ".join(LATENCY_COLUMNS).split()
    row = lines[1].split()
    assert row[:4] == ["onnxruntime", "fp32", "1", "1"] and int(row[-1]) >= 25 and float(row[4]) > 0
    checks = {line.split()[0] + " " + line.split()[1]: line for line in lines if line.startswith("latency ")}
    assert checks["latency p50"].rstrip().endswith("PASS") and "%" in checks["latency p50"]
    assert checks["latency p99"].rstrip().endswith("FAIL")
    assert any(line.startswith("params") and line.rstrip().endswith("PASS") for line in lines)
    assert "verdict: FAIL   budget tiny-device" in lines
    assert lines[-1] == "bench-tiny.json"  # the result path stays the last line
    record = json.loads((dest / "bench-tiny.json").read_text())
    assert record["budget"]["verdict"] == "FAIL" and [c["name"] for c in record["budget"]["checks"]] == [
        "latency p50",
        "latency p99",
        "params",
    ]
    assert record["torch_imported"] is False


def test_runner_refuses_a_bad_budget_json(artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "budget.json"
    for text, message in [
        ("{", "unreadable budget JSON"),
        ('{"limits": {"latency": {"p90": 1}}}', "unknown limits latency"),
        ('{"limits": {"latency_ms": {"p90": -1}}}', "finite number > 0"),
        ('{"limits": {"params_m": "1"}}', "finite number > 0"),
    ]:
        bad.write_text(text)
        with pytest.raises(BenchError, match=message):
            run_isolated(RUNNER, [str(artifact), *FAST, "--budget", str(bad)])
    with pytest.raises(BenchError, match="budget file not found"):
        run_isolated(RUNNER, [str(artifact), *FAST, "--budget", str(tmp_path / "missing.json")])
