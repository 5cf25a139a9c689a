"""INT8 that pays or says it doesn't, and `precision: auto`: the pure decisions on recorded timings, then end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgedistill.bench.choose import choose_precision
from edgedistill.bench.pays import PAYS_AT, int8_speedups, p50_of
from edgedistill.budget import AUTO, Budget, auto_candidates, is_auto, load_budget
from edgedistill.errors import BenchError, BudgetError
from edgedistill.export.manifest import read_manifest
from edgedistill.pipeline.bench import fp32_baselines
from edgedistill.report.markdown import render_markdown
from edgedistill.run import RunDir

REPO = Path(__file__).resolve().parents[1]


def _result(runtime: str, precision: str, p50: float, device: str = "cpu", **extra: Any) -> dict[str, Any]:
    """A runner result as recorded in bench.json (only the fields the decisions read)."""
    return {
        "runtime": runtime,
        "precision": precision,
        "artifact": f"runs/x/export/{runtime}-{precision}",
        "device": device,
        "threads": 1,
        "batch": 1,
        "stats": {"p50": p50, "p90": p50 * 1.2},
        **extra,
    }


# Recorded on this project's 2-vCPU reference VM shape: ORT INT8 vs ORT FP32 vs torch eager.
RECORDED = [
    _result("onnxruntime", "int8", 0.100),
    _result("onnxruntime", "fp32", 0.210),
    _result("torch", "fp32", 0.450),
]


def test_int8_speedup_is_best_fp32_over_int8() -> None:
    (s,) = int8_speedups(RECORDED)
    assert s.best_fp32 == "onnxruntime fp32" and s.best_fp32_p50_ms == 0.210
    assert s.speedup_vs_best_fp32 == pytest.approx(2.1) and s.pays and s.warning is None


def test_int8_under_1_1x_is_flagged_with_the_fp32_runtime_and_p50() -> None:
    results = [
        _result("openvino", "int8", 0.200),
        _result("openvino", "fp32", 0.208),
        _result("onnxruntime", "fp32", 0.3),
    ]
    (s,) = int8_speedups(results)
    assert s.speedup_vs_best_fp32 == pytest.approx(1.04) and s.pays is False
    assert s.warning == "INT8 pays less than 1.1× over FP32 (openvino 0.208 ms): 1.04×"
    exactly = int8_speedups([_result("onnxruntime", "int8", 0.1), _result("onnxruntime", "fp32", 0.1 * PAYS_AT)])
    assert exactly[0].pays  # at the threshold it pays


def test_int8_compares_only_with_fp32_on_the_same_device_threads_and_batch() -> None:
    results = [
        _result("onnxruntime", "int8", 0.5, device="cuda"),
        _result("onnxruntime", "fp32", 0.1),  # CPU: not comparable
        {**_result("onnxruntime", "fp32", 0.01, device="cuda"), "threads": 4},  # other threads: not comparable
    ]
    (s,) = int8_speedups(results)
    assert s.speedup_vs_best_fp32 is None and s.pays is None and "no FP32 timing on cuda" in str(s.warning)
    results.append(_result("onnxruntime", "fp32", 0.6, device="cuda"))
    assert int8_speedups(results)[0].speedup_vs_best_fp32 == pytest.approx(1.2)


def test_split_timings_compare_the_inference_stage() -> None:
    split = {"pre": {"p50": 0.05}, "infer": {"p50": 0.08}, "post": {"p50": 0.01}}
    r = _result("onnxruntime", "int8", 0.14, split=split)
    assert p50_of(r) == 0.08
    assert int8_speedups([r, _result("onnxruntime", "fp32", 0.16)])[0].speedup_vs_best_fp32 == pytest.approx(2.0)


def _auto_budget(runtime: str = "openvino", max_drop: float = 1.0) -> Budget:
    return Budget.model_validate(
        {
            "name": "auto-test",
            "device": {"family": "x86"},
            "target": {"runtime": runtime, "precision": "auto", "recipe": f"{runtime}-int8.yaml"},
            "input": {"height": 28, "width": 28, "channels": 1},
            "limits": {"params_m": 1},
            "accuracy": {"max_int8_drop_pts": max_drop},
        }
    )


def test_choose_deploys_the_fastest_kept_precision() -> None:
    c = choose_precision({"fp32": 0.21, "fp16": 0.20, "int8": 0.10}, {"fp16": 0.0, "int8": 0.3}, _auto_budget())
    assert (c.precision, c.target) == ("int8", "openvino-int8")
    by = {o.precision: o for o in c.candidates}
    assert by["int8"].deployed and by["int8"].reason.endswith("→ deployed")
    assert (
        not by["fp16"].pays
        and by["fp16"].reason == "fp16: 1.05× over fp32 (0.200 ms p50, drop 0.00 pts), less than 1.1× → deployed int8"
    )
    assert by["fp32"].reason.endswith("→ int8 is faster")


def test_int8_that_does_not_pay_deploys_fp32() -> None:
    c = choose_precision({"fp32": 0.21, "int8": 0.202}, {"int8": 0.1}, _auto_budget("onnxruntime"))
    assert c.precision == "fp32" and c.target == "onnxruntime-fp32"
    assert "int8: 1.04× over fp32 (0.202 ms p50, drop 0.10 pts), less than 1.1× → deployed fp32" in c.reasons


def test_int8_faster_at_p50_but_with_a_longer_tail_deploys_fp32() -> None:
    """The AVX2 demo case: INT8 0.242 ms p50 vs FP32 0.268 (1.11×), but p90 0.395 vs 0.294 ms."""
    p50, p90 = {"fp32": 0.268, "int8": 0.242}, {"fp32": 0.294, "int8": 0.395}
    c = choose_precision(p50, {"int8": 0.0}, _auto_budget("onnxruntime"), tails=p90)
    assert c.precision == "fp32"
    int8 = next(o for o in c.candidates if o.precision == "int8")
    assert not int8.pays and int8.p90_ms == 0.395
    assert int8.reason == (
        "int8: 1.11× over fp32 (0.242 ms p50, p90 0.395 vs 0.294 ms, drop 0.00 pts), but its p90 is not below "
        "fp32's → deployed fp32"
    )
    shorter = choose_precision(p50, {"int8": 0.0}, _auto_budget("onnxruntime"), tails={**p90, "int8": 0.25})
    assert shorter.precision == "int8"


def test_precision_over_the_accuracy_budget_is_not_kept_even_when_fastest() -> None:
    targets = {"int8": "openvino-int8-ac"}
    c = choose_precision(
        {"fp32": 0.3, "fp16": 0.2}, {"fp16": 0.5, "int8": 1.8}, _auto_budget(), targets=targets, skipped={}
    )
    assert c.precision == "fp16"
    int8 = next(o for o in c.candidates if o.precision == "int8")
    assert int8.target == "openvino-int8-ac" and not int8.kept and int8.p50_ms is None
    assert int8.reason == "int8: drops 1.80 pts, over accuracy.max_int8_drop_pts 1 → not kept"
    tied = choose_precision({"fp32": 0.2, "fp16": 0.1, "int8": 0.1}, {"fp16": 0.0, "int8": 0.0}, _auto_budget())
    assert tied.precision == "fp16"  # a tie goes to the higher precision


def test_choose_needs_fp32_and_lists_skipped_precisions() -> None:
    with pytest.raises(BenchError, match="needs the FP32 artifact's timing"):
        choose_precision({"int8": 0.1}, {"int8": 0.0}, _auto_budget())
    c = choose_precision({"fp32": 0.2}, {}, _auto_budget("onnxruntime"), skipped={"fp16": "not exported: slow"})
    assert c.reasons[0] == "fp16: not exported: slow" and c.precision == "fp32"


def _write_budget(tmp_path: Path, runtime: str, precision: str, recipe: str, name: str = "auto-x") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ndevice: {{family: x86}}\n"
        f"target: {{runtime: {runtime}, precision: {precision}, recipe: {recipe.removesuffix('.yaml')}, threads: 1}}\n"
        "input: {height: 28, width: 28, channels: 1}\nlimits: {params_m: 0.15}\n"
    )
    return path


def test_auto_budget_candidates_per_runtime(tmp_path: Path) -> None:
    ov = load_budget(_write_budget(tmp_path, "openvino", "auto", "openvino-int8-ac.yaml"))
    assert is_auto(ov.budget) and ov.budget.target.precision == AUTO
    cands = auto_candidates(ov)
    assert [r.target for r in cands.recipes] == ["openvino-fp32", "openvino-fp16", "openvino-int8-ac"]
    assert cands.recipes[1].quantization is None and cands.recipes[1].opset == ov.recipe.opset and not cands.skipped
    ort = auto_candidates(load_budget(_write_budget(tmp_path, "onnxruntime", "auto", "onnxruntime-int8.yaml")))
    assert [r.target for r in ort.recipes] == ["onnxruntime-fp32", "onnxruntime-int8"]
    assert "slower than FP32" in ort.skipped["fp16"]


def test_auto_budget_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="precision auto needs an int8 recipe, openvino-fp16 is for fp16"):
        load_budget(_write_budget(tmp_path, "openvino", "auto", "openvino-fp16.yaml"))
    with pytest.raises(BudgetError, match="precision auto needs a runtime with an int8 export; torch runs fp32"):
        load_budget(_write_budget(tmp_path, "torch", "auto", "onnx-fp32.yaml"))
    with pytest.raises(BudgetError, match="precision: Input should be 'fp32', 'fp16', 'int8' or 'auto'"):
        load_budget(_write_budget(tmp_path, "onnxruntime", "int4", "onnxruntime-int8.yaml"))


def test_report_renders_the_flag_and_the_reasons() -> None:
    choice = choose_precision({"fp32": 0.21, "int8": 0.202}, {"int8": 0.1}, _auto_budget("onnxruntime"))
    speedups = [s.to_json() for s in int8_speedups([_result("onnxruntime", "int8", 0.202), RECORDED[1]])]
    report = {
        "run": "runs/x",
        "budget": None,
        "exports": [{"target": "onnxruntime-int8", "int8_speedup": speedups}],
        "precision_choice": choice.to_json(),
    }
    md = render_markdown(report, {})
    assert "## INT8 vs FP32" in md and "| onnxruntime-int8 | onnxruntime | cpu | 0.202 |" in md
    assert "**Warning:** INT8 pays less than 1.1× over FP32 (onnxruntime 0.210 ms): 1.04×." in md
    assert "Deployed `onnxruntime-fp32`" in md and "- int8: 1.04× over fp32" in md


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edgedistill", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_auto_budget_end_to_end_from_the_cli(trained_run: Path, tmp_path: Path) -> None:
    """export on an auto budget exports every candidate; bench times them, deploys one, says why; report shows it."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint", "report", "bench"))
    # Same name as the run's budget, so the stored width choice is reused (no search), and its drop allowance.
    max_drop = yaml.safe_load((run / "budget.yaml").read_text())["accuracy"]["max_int8_drop_pts"]
    budget = _write_budget(tmp_path, "onnxruntime", "auto", "onnxruntime-int8.yaml", name="demo-cpu")
    budget.write_text(budget.read_text() + f"accuracy: {{max_int8_drop_pts: {max_drop}}}\n")
    r = _cli("export", "--run", str(run), "--budget", str(budget))
    assert r.returncode == 0, r.stderr
    assert "precision auto: exported onnxruntime-fp32, onnxruntime-int8" in r.stdout
    assert "fp16: not exported" in r.stdout
    fp32, int8 = run / "export" / "onnxruntime-fp32", read_manifest(run / "export" / "onnxruntime-int8")
    assert fp32_baselines(RunDir(run), int8, "cpu") == [(fp32, [])]
    assert fp32_baselines(RunDir(run), int8, "cuda") == [(fp32, []), (fp32, ["--device", "cuda"])]
    ov = int8.model_copy(update={"runtime": "openvino"})  # no openvino-fp32 IR in the run: OpenVINO loads the ONNX
    assert fp32_baselines(RunDir(run), ov, "gpu")[1] == (
        fp32,
        ["--runtime", "openvino", "--hint", "f32", "--device", "gpu"],
    )
    import edgedistill as ed  # the report in-process: it is light, and two fewer CLI starts keep this test short

    report = ed.report(run, budget=budget)  # before bench: the decision is missing, and said so
    assert "deployed precision (precision auto: run `edgedistill bench` to choose)" in report.missing
    # --no-reference: the FP32 candidate is the FP32 ONNX reference itself, so the decision and the flag compare the
    # same two timings.
    bench_args = ("--runs", "30", "--warmup", "3", "--min-time", "0", "--no-reference")
    r = _cli("bench", "--run", str(run), "--budget", str(budget), *bench_args)
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    deployed = json.loads((run / "bench" / "deployed.json").read_text())
    assert deployed["budget"] == "demo-cpu" and deployed["target"] in {"onnxruntime-fp32", "onnxruntime-int8"}
    assert f"precision auto: deployed {deployed['target']}" in r.stdout
    rec = json.loads((run / "export" / deployed["target"] / "bench.json").read_text())
    assert rec["precision_choice"]["target"] == deployed["target"] and rec["artifact"].endswith(deployed["target"])
    timed = sorted((x["runtime"], x["precision"]) for x in rec["results"])
    assert timed == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    (s,) = rec["int8_speedup"]
    int8_p50 = next(x["stats"]["p50"] for x in rec["results"] if x["precision"] == "int8")
    fp32_p50 = next(x["stats"]["p50"] for x in rec["results"] if x["precision"] == "fp32")
    assert s["speedup_vs_best_fp32"] == pytest.approx(fp32_p50 / int8_p50)
    pays = s["speedup_vs_best_fp32"] >= PAYS_AT
    assert ("warning: INT8 pays less than" in r.stdout) == (not pays)
    p90 = {x["precision"]: x["stats"]["p90"] for x in rec["results"]}
    faster = pays and p90["int8"] < p90["fp32"]  # the INT8 drop is within the fixture's budget
    assert (deployed["target"] == "onnxruntime-int8") == faster
    report = ed.report(run, budget=budget)
    md = report.markdown.read_text()
    assert f"artifact `{deployed['target']}`" in md and "## Deployed precision (auto)" in md and "## INT8 vs FP32" in md
    assert report.precision_choice is not None  # `edgedistill report`'s line: what deployed, both latencies
    line = report.precision_choice.summary()
    assert line.startswith(f"precision auto deployed {deployed['target']}: fp32 {fp32_p50:.3f} ms p50; int8: ")
    assert f"p90 {p90['int8']:.3f} vs {p90['fp32']:.3f} ms" in line
