"""Benchmark scripts in bench/: planning and aggregation on recorded run outputs, and one tiny real run (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pq() -> ModuleType:
    return _script("pretrained_quality")


def _fake_run(root: Path, acc: float, macs: float, int8: float, p50: float) -> Path:
    """A run folder with the three files the benchmark reads, shaped as train, export and bench write them."""
    root.mkdir(parents=True)
    train = {
        "steps": 5,
        "family": "timm",
        "train_seconds": 12.5,
        "stage_seconds": {"train": 12.5},
        "width_accuracy": {"0.25": acc - 3, "0.5": acc - 2, "0.75": acc - 1, "1.0": acc},
        "chosen": {"config": [0.5] * 6, "macs": macs, "params": 1.0e6, "upem": 90.0, "test_accuracy": acc - 2},
        "search": {"strategy": "exhaustive", "upem": "agreement", "seconds": 3.0},
        "teachers": [{"source": "ccexam:usps?box=12", "score": 0.8, "alpha": 1.0, "extra": 1}],
    }
    (root / "train.json").write_text(json.dumps(train))
    art = root / "export" / "onnxruntime-int8"
    art.mkdir(parents=True)
    fp32 = acc - 2
    accuracy = {"fp32": fp32, "artifact": int8, "quantized": int8, "drop_pts": fp32 - int8}
    (art / "manifest.json").write_text(json.dumps({"accuracy": accuracy}))
    stats = {"p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5}
    results = [{"runtime": "onnxruntime", "precision": "int8", "stats": stats, "threads": 2, "machine": {}}]
    (art / "bench.json").write_text(json.dumps({"results": results, "verdict": "PASS"}))
    return root


def test_plan_covers_every_run_and_task_files_validate(pq: ModuleType) -> None:
    from edgedistill.config import validate_as
    from edgedistill.task import TaskConfig, check_names

    jobs = pq.plan(["mnist", "optdigits"], list(pq.VARIANTS), [0, 1, 2])
    assert len(jobs) == 2 * 5 * 3 and len({j.name for j in jobs}) == len(jobs)
    for job in jobs[:5] + jobs[-5:]:
        cfg = check_names(validate_as(TaskConfig, pq.task_config(job, 7), job.name), job.name)
        assert cfg.train.steps == 7 and cfg.data.seed == cfg.train.seed == job.seed
        assert cfg.train.distiller == pq.VARIANTS[job.variant].distiller
    transfer = pq.task_config(pq.Job("mnist", "transfer", 1), 7)
    assert transfer["train"]["num_sampled"] == 1 and transfer["student"]["options"]["weights"].startswith("packaged:")
    assert pq.task_config(pq.Job("optdigits", "scratch-ce", 0), 7)["student"]["family"] == "mobilenet"


def test_sandwich_of_one_is_the_largest_width_only() -> None:
    """The transfer baseline relies on num_sampled 1 training the full width alone."""
    import torch

    from edgedistill.distill.sampler import sandwich_configs
    from edgedistill.models import build_bank

    bank = build_bank("mobilenet", 10, 3, width_choices=(0.5, 1.0))
    assert sandwich_configs(bank, 1, torch.Generator().manual_seed(0)) == [bank.largest_config()]


def test_collect_and_markdown_mean_std(pq: ModuleType, tmp_path: Path) -> None:
    rows = []
    for seed, (acc, int8) in enumerate([(90.0, 87.0), (92.0, 89.0)]):
        run = _fake_run(tmp_path / f"p{seed}", acc, 13.0e6, int8, 1.0 + seed)
        rows.append({"task": "mnist", "variant": "pretrained-distill-weighted", "seed": seed} | pq.collect(run))
    for seed in (0, 1):
        run = _fake_run(tmp_path / f"s{seed}", 80.0, 13.5e6, 79.0, 0.5)
        row = {"task": "mnist", "variant": "scratch-distill-weighted", "seed": seed, "errors": {"export": "a|b"}}
        rows.append(row | pq.collect(run))
    assert rows[0]["int8_drop_pts"] == pytest.approx(1.0) and rows[0]["latency_ms"]["p50"] == 1.0
    assert rows[0]["teachers"] == [{"source": "ccexam:usps?box=12", "score": 0.8, "alpha": 1.0}]
    assert pq.mean_std([90.0, 92.0]) == "91.00 ± 1.41" and pq.mean_std([3.0]) == "3.00" and pq.mean_std([]) == "-"

    md = pq.markdown(rows, "python bench/pretrained_quality.py --steps 5", {"cpu": "x", "usable_cores": 2}, 5)
    assert "`python bench/pretrained_quality.py --steps 5`" in md and "5 steps of 32 labeled" in md
    line = next(x for x in md.splitlines() if x.startswith("| mnist | pretrained-distill-weighted | 2 |"))
    # width 1.0, 0.75, 0.5, 0.25; MACs; FP32; INT8; drop; p50 (1.0, 2.0); train s
    assert "| 91.00 ± 1.41 | 90.00 ± 1.41 | 89.00 ± 1.41 | 88.00 ± 1.41 | 13.00 ± 0.00 |" in line
    assert "| 88.00 ± 1.41 | 1.00 ± 0.00 | 1.500 ± 0.707 |" in line
    assert "beats the scratch bank" in md and "88.00% at 13.00 M MACs vs 79.00% at 13.50 M MACs (+9.00 pts)" in md
    assert "export: a/b" in md  # a run's error is listed, its pipe escaped out of the table


def test_verdict_says_by_how_much_it_does_not_beat(pq: ModuleType, tmp_path: Path) -> None:
    rows = [
        {"task": "optdigits", "variant": v, "seed": 0} | pq.collect(_fake_run(tmp_path / v, 80.0, 12e6, i8, 1.0))
        for v, i8 in (("pretrained-distill-weighted", 70.0), ("scratch-distill-weighted", 75.5))
    ]
    assert "does not beat" in pq.verdict(rows, "optdigits") and "(-5.50 pts)" in pq.verdict(rows, "optdigits")
    assert pq.verdict(rows[:1], "optdigits") is None  # nothing to compare against


def test_merge_keeps_the_rows_a_chunk_does_not_redo(pq: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "pq.json"
    old = [{"task": "mnist", "variant": v, "seed": 0} for v in ("scratch-ce", "transfer")]
    path.write_text(json.dumps({"commands": ["python bench/pretrained_quality.py --seeds 0"], "steps": 5, "rows": old}))
    rows, commands = pq.merged_rows(path, pq.plan(["mnist"], ["transfer"], [0]), 5)
    assert rows == old[:1] and commands == ["python bench/pretrained_quality.py --seeds 0"]
    with pytest.raises(SystemExit, match="rows of 5 steps cannot be merged with --steps 7"):
        pq.merged_rows(path, [], 7)
    assert pq.merged_rows(tmp_path / "none.json", [], 5) == ([], [])


@pytest.mark.slow
def test_pretrained_quality_tiny_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    cmd = [sys.executable, "bench/pretrained_quality.py", "--seeds", "0", "--tasks", "optdigits"]
    cmd += ["--variants", "scratch-ce", "--steps", "2", "--work", str(tmp_path / "runs"), "--out", str(out)]
    subprocess.run(cmd, cwd=REPO, check=True, timeout=900)
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert (
        row["steps"] == 2
        and row["family"] == "mobilenet"
        and set(row["width_accuracy"]) == {"0.25", "0.5", "0.75", "1.0"}
    )
    assert row["chosen"]["macs"] <= 14e6 and "train" not in row["errors"]
    # 2 steps leave the net untrained, so its INT8 drop may exceed the budget: export then fails after its manifest
    assert "export" not in row["errors"] or "max_int8_drop_pts" in row["errors"]["export"]
    assert row["latency_ms"]["p50"] > 0 and "| optdigits | scratch-ce | 1 |" in out.with_suffix(".md").read_text()


def test_int8_recovery_task_files_validate_and_rows_merge(tmp_path: Path) -> None:
    """bench/int8_recovery.py: its task and budget files load; a rerun replaces its own rows, keeps the others."""
    from edgedistill.budget import load_budget
    from edgedistill.task import load_task

    ir = _script("int8_recovery")
    task, budget, _ = ir.prepare(tmp_path, "lite0-64", 1, 5)
    assert load_task(task)[0].train.steps == 5 and load_budget(budget).budget.accuracy.max_int8_drop_pts == 0.5
    out = tmp_path / "res"

    def row(seed: int, step: str, drop: float) -> dict:
        latency = {"p50": 1.0, "p90": 1.2}
        return {"case": "lite0-64", "seed": seed, "step": step, "fp32_top1": 80.0, "int8_top1": 80.0 - drop,
                "drop_pts": drop, "layers_in_fp": [], "qad_seconds": None, "latency_ms": latency}  # fmt: skip

    ir.write(out, [row(0, "ptq", 9.0), row(0, "qat", 0.5)], "cmd")
    ir.write(out, [row(1, "ptq", 5.0), row(0, "ptq", 7.0)], "cmd")
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["seed"], r["step"], r["drop_pts"]) for r in rows] == [(0, "ptq", 7.0), (0, "qat", 0.5), (1, "ptq", 5.0)]
    assert "| lite0-64 | ptq | 2 | 80.00 ± 0.00 | 74.00 ± 1.41 | 6.00 ± 1.41 |" in out.with_suffix(".md").read_text()
