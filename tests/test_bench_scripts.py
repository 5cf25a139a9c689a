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


def test_udon_quality_task_and_tables() -> None:
    """bench/udon_quality.py: its task validates; specialists and universal variants aggregate per domain."""
    from edgedistill.task import check_names

    uq = _script("udon_quality")
    cfg = check_names(uq.bench_task(7), "bench")
    assert cfg.train.steps == 7 and cfg.student.width_choices == [1.0] and len(cfg.data.domains) == 2
    assert uq._variant(cfg, 2, "udon-online", "uniform", "domain").train.udon.batches == "domain"

    def scores(top1: float) -> dict[str, float]:
        return {"top1": top1, "recall_at_1": top1 + 1, "map_at_5": top1 - 1}

    rows = [
        {"variant": "specialist", "sampler": "-", "batches": "-", "seed": s, "domains": {d: scores(90.0 + s)}}
        | {"p_final": None, "ms_per_step": 1.0}
        for s in (0, 1)
        for d in ("mnist", "ising")
    ] + [
        {"variant": "udon-online", "sampler": "udon", "batches": "mixed", "seed": s, "p_final": [0.4, 0.6]}
        | {"ms_per_step": 5.0}
        | {"domains": {"mnist": scores(80.0 + 2 * s), "ising": scores(70.0)}}
        for s in (0, 1)
    ]
    summary = {(s["variant"], s["sampler"], s["batches"]): s for s in uq.summarise(rows)}
    spec = summary[("specialist", "-", "-")]
    assert spec["ms_per_step"] == 2.0 and spec["mean"]["top1"] == [90.0, 91.0]  # two students per seed
    online = summary[("udon-online", "udon", "mixed")]
    assert online["domains"]["mnist"]["top1"] == [80.0, 82.0] and online["mean"]["top1"] == [75.0, 76.0]
    md = uq.markdown(rows, "python bench/udon_quality.py --steps 7", {"cpu": "x", "torch_threads": 1}, uq.BENCH)
    assert "| udon-online | udon | mixed | 81.00 ± 1.41 | 70.00 ± 0.00 | 75.50 ± 0.71 | 5.0 |" in md
    assert "| specialist | - | - | 90.50 ± 0.71 | 90.50 ± 0.71 | 90.50 ± 0.71 | 2.0 |" in md
    assert "| udon-online | udon | mixed | 1 | 82.0 / 83.0 / 81.0 | 70.0 / 71.0 / 69.0 | 0.40, 0.60 |" in md


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


def test_int8_cause_finds_the_worst_layer_of_a_real_run(trained_run: Path) -> None:
    """bench/int8_cause.py on the session run: weights-only and activations-only agreements, the layers ranked by
    what rounding only their weights costs, and the worst layer's own SQNR against the logits'."""
    ic = _script("int8_cause")
    r = ic.analyse(trained_run, "onnxruntime-int8", images=400)
    assert set(r["fake_quant"]) == {"all", "weights", "activations"} and r["test_images"] == 400
    assert r["folded_agreement"] >= 99.0 and 1.0 <= r["weight_spread"][0] <= r["weight_spread"][1]
    assert all(0 <= v["agreement"] <= 100 for v in r["fake_quant"].values())
    ranked = [x["agreement"] for x in r["single_layer_weights"]]
    assert ranked == sorted(ranked) and r["worst_layer"]["layer"] == r["single_layer_weights"][0]["layer"]
    assert r["worst_layer"]["own_sqnr_db"] > 0 and r["bn_gains"][0]["max_gain"] >= r["bn_gains"][-1]["max_gain"]
    md = "\n".join(ic.markdown(r, "python bench/int8_cause.py --run R", {"cpu": "x", "cpu_flags": ["avx2"]}))
    assert "`python bench/int8_cause.py --run R`" in md and r["worst_layer"]["layer"] in md


def _quality_record() -> dict:
    """A recorded bank of 2 stages × widths (0.5, 1.0): test accuracy grows with the summed width, and each config
    gets wrong on the scoring images exactly the share it gets wrong on test, against the widest config's labels."""
    import torch

    widths, classes, n = [0.5, 1.0], 3, 40
    configs = [(a, b) for a in widths for b in widths]
    labels = torch.arange(n) % classes

    def logits(config: tuple[float, ...], truth: torch.Tensor) -> torch.Tensor:
        wrong = int(n * (2.0 - sum(config)) / 4)  # widest: none wrong
        pred = truth.clone()
        pred[:wrong] = (pred[:wrong] + 1) % classes
        return torch.nn.functional.one_hot(pred, classes).float() * 5

    search = {"logits": torch.stack([logits(c, labels) for c in configs]), "heads": None}
    return {
        "name": "toy", "task": "toy", "labels_per_class": 1, "family": "resnet_cifar", "width_choices": widths,
        "num_stages": 2, "space": 4, "configs": [list(c) for c in configs], "macs": [sum(c) * 1e6 for c in configs],
        "params": [1e5] * 4, "budget": {"name": "toy-budget", "macs_m": 1.5, "params_m": None},
        "test_labels": labels, "test_logits": search["logits"], "labeled_labels": labels[:3],
        "labeled_logits": search["logits"][:, :3], "outputs": {"search": search, "pool": search}, "images": {},
    }  # fmt: skip


def test_search_quality_report_regret_and_rho_on_a_recorded_bank() -> None:
    """bench/search_quality_report.py: a UPEM that ranks as test accuracy does has ρ 1 and no regret; entropy, flat
    here, cannot rank; the markdown holds every table."""
    sys.path.insert(0, str(REPO / "bench"))
    report, tables = _script("search_quality_report"), _script("search_quality_tables")
    bank = report.bank_result(_quality_record(), [0.5], ["auto", "greedy"], 0)
    assert bank["accuracy_range"] == [75.0, 100.0] and bank["rho"]["agreement-widest"] == pytest.approx(1.0)
    assert bank["rho"]["entropy"] is None and bank["rho"]["discrepancy"] is None
    own, half = bank["budgets"]
    assert (own["budget"], own["feasible"], own["best"], half["feasible"]) == ("toy-budget", 3, [0.5, 1.0], 1)
    assert own["regret"]["agreement-widest+auto"] == 0.0 and own["regret"]["agreement-widest+greedy"] == 0.0
    assert own["chosen"]["agreement-widest+auto"] in ([0.5, 1.0], [1.0, 0.5])  # both 87.5%, the others 75%
    summary = report.summary([bank])
    assert summary["regret"]["agreement-widest+auto"] == {"mean": 0.0, "worst": 0.0, "cases": 2}
    machine = {"cpu": "x", "usable_cores": 2}
    result = {"command": "cmd", "created": "now", "machine": machine, "versions": {}, "predictor_scores": 8,
              "upems": {"agreement-widest": "a"}, "summary": summary, "banks": [bank]}  # fmt: skip
    md = tables.markdown(result)
    assert "| toy | toy-budget | 3 | [0.5, 1.0] (87.50) | 1.000 |" in md
    assert "## Study" in md and "`agreement-widest+auto` | 0.00 | 0.00 | 2 |" in md


def test_flagship_markdown_reports_qad_and_kept_mixed_models() -> None:
    fl = _script("flagship_224")
    qad = {"trigger": "auto: its fallback fits only with 59 of 60 layers in float", "steps": 100, "seconds": 487.6,
           "bn": "folded", "layers": 50, "drop_before_pts": 55.0, "drop_after_pts": -4.9,
           "parity": {"agreement_pct": 98.8}, "method": "m"}  # fmt: skip
    art = {
        "artifact": "onnxruntime-int8", "budget": "b", "config": [0.25] * 6, "macs_m": 245.9, "params_m": 2.48,
        "accuracy": {"fp32": 85.8, "quantized": 90.7, "drop_pts": -4.9},
        "latency_ms": {"onnxruntime-int8": {"p50": 1.6, "p90": 1.8, "p99": 2.0}}, "checks": [],
        "layers_in_float": 0, "qad": qad, "notes": {}, "verdict": "PASS", "machine": {"cpu": "x", "usable_cores": 2},
    }  # fmt: skip
    kept = art | {"artifact": "openvino-int8", "qad": None, "layers_in_float": 7, "notes": {"qad": "QAD was tried"}}
    r = {
        "task": "t", "steps": 400, "created": "2026-12-06T00:00:00", "wall_seconds": {"train": None, "bench": 10.0},
        "total_seconds": 10.0, "train_process_not_timed": True, "train_stage_seconds": {"train": 784.1},
        "width_accuracy": {"0.25": 85.8}, "teachers": [{"source": "s", "score": 0.5, "alpha": 1.0}],
        "artifacts": [art, kept],
    }  # fmt: skip
    md = fl.markdown(r, "python bench/flagship_224.py --after-train")
    assert "onnxruntime-int8: QAD (auto: its fallback fits only with 59 of 60 layers in float): 100 steps" in md
    assert "test drop +55.00 → -4.90 pts" in md and "98.8% top-1 agreement" in md
    assert "openvino-int8: QAD was tried." in md and "openvino-int8 7" in md


def test_int8_latency_files_one_table_per_isa_and_finds_depthwise_convs(tmp_path: Path) -> None:
    """`bench/int8_latency.py` writes latency-<ISA>[-TAG].json (a VNNI table is not overwritten by an AVX2 run), and
    its float-depthwise variant finds exactly the depthwise convs of an exported net."""
    sys.path.insert(0, str(REPO / "bench"))  # the script imports its sibling latency_models
    try:
        lat = _script("int8_latency")
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert lat.isa_tag(["avx2", "fma", "avx512f", "avx512_vnni"]) == "avx512-vnni"
    assert lat.isa_tag(["avx2", "fma", "avx_vnni"]) == "avx-vnni" and lat.isa_tag(["avx2", "fma"]) == "avx2"
    assert lat.isa_tag(["asimd"]) == "other"
    assert lat.results_path({"cpu_flags": ["avx2"]}).name == "latency-avx2.json"
    assert lat.results_path({"cpu_flags": ["avx512_vnni"]}, "openvino").name == "latency-avx512-vnni-openvino.json"
    import torch
    from torch import nn

    from edgedistill.export.torch2onnx import torch_to_onnx

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 3, groups=2)).eval()
    torch.manual_seed(0)
    model = torch_to_onnx(net, (1, 3, 16, 16), tmp_path / "m.onnx")
    assert lat.depthwise_convs(model) == ["/1/Conv"]  # groups=2 has 4 input channels per group: not depthwise
