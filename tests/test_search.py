"""Width search: cost counts, block keys and the latency table, UPEMs, strategies, the search and its CLI."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from edgedistill.budget.spec import LatencyLimit, Limits
from edgedistill.errors import BudgetError, ConfigError, RegistryError
from edgedistill.models import bank_cost, build_bank, count_cost, extract
from edgedistill.search import (
    SEARCH_STRATEGIES,
    UPEMS,
    CostEstimator,
    CostInputs,
    LatencyLUT,
    LatencyPredictor,
    Problem,
    SearchSettings,
    UnlabeledImages,
    search_widths,
)
from edgedistill.search.blocks import BlockKeys, blocks_of, distinct_blocks, plain_net
from edgedistill.search.lut import bank_signature
from edgedistill.search.upem import Outputs, Reference, ensemble_reference, uniform_configs

REPO = Path(__file__).resolve().parents[1]
SHAPE = (1, 1, 28, 28)


def _bank() -> nn.Module:
    torch.manual_seed(0)
    return build_bank("resnet_cifar", 10, 1, base_channels=(16, 32, 64)).eval()


# ---- cost counts ------------------------------------------------------------------------------


def test_cost_counts_match_hand_counts() -> None:
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 28 * 28, 10))
    cost = count_cost(net, SHAPE)
    assert cost.macs == 8 * 9 * 28 * 28 + 8 * 28 * 28 * 10
    assert cost.params == 8 * 9 + 8 * 28 * 28 * 10 + 10


def test_meta_cost_estimator_equals_extracted_subnet_cost() -> None:
    bank = _bank()
    estimate = CostEstimator(CostInputs(bank, SHAPE))
    for config in [(0.25, 0.5, 1.0), (1.0, 1.0, 1.0), (0.5, 0.25, 0.75)]:
        ref = bank_cost(bank, config, SHAPE)
        got = estimate(config)
        assert (got.macs, got.params) == (ref.macs, ref.params) and got.latency_ms is None


# ---- blocks and latency table -----------------------------------------------------------------


def test_block_keys_cover_every_config_and_follow_channels() -> None:
    bank = _bank()
    keys_of = BlockKeys(bank, SHAPE)
    blocks = distinct_blocks(bank, SHAPE)
    every = {k for c in bank.all_configs() for k in keys_of(c)}
    assert every == set(blocks)
    # The fast keys equal those of a real forward of the extracted subnet.
    config = (0.5, 0.25, 1.0)
    assert keys_of(config) == [b.key for b in blocks_of(extract(bank, config), SHAPE)]
    # Changing stage 2 only changes the blocks that read or write stage 2.
    a, b = keys_of((0.5, 0.5, 0.5)), keys_of((0.5, 0.5, 1.0))
    assert a[:3] == b[:3] and a[3:] != b[3:]
    # Each block module reproduces its slice of the net.
    net = plain_net(bank, config, "cpu")
    x = torch.randn(SHAPE)
    y = x
    for block in blocks_of(net, SHAPE):
        y = block.module(y)
    torch.testing.assert_close(y, net(x))


def _fake_lut(bank: nn.Module, per_block: float = 0.1, overhead: float = 0.02) -> LatencyLUT:
    blocks = distinct_blocks(bank, SHAPE)
    stat = {"p50": overhead, "p90": overhead, "p99": overhead, "mean": overhead}
    # Latency grows with a block's parameter count: a known, checkable table.
    entries = {}
    for key, b in blocks.items():
        v = per_block + sum(p.numel() for p in b.module.parameters()) * 1e-6
        entries[key] = {"p50": v, "p90": 1.5 * v, "p99": 2 * v, "mean": v}
    return LatencyLUT(
        runtime="onnxruntime",
        precision="int8",
        recipe="onnxruntime-int8",
        input=list(SHAPE),
        threads=1,
        bank=bank_signature(bank),
        family=bank.family,
        timing={"runs": 10},
        machine={"cpu": "test"},
        versions={},
        created="now",
        overhead_ms=stat,
        blocks=entries,
    )


def test_lut_round_trip_and_predictor(tmp_path: Path) -> None:
    bank = _bank()
    lut = _fake_lut(bank)
    path = lut.save(tmp_path / "lut.json")
    loaded = LatencyLUT.load(path)
    assert loaded == lut
    predict = LatencyPredictor(loaded, bank)
    config = (0.5, 1.0, 0.25)
    keys = BlockKeys(bank, SHAPE)(config)
    expected = 0.02 + sum(lut.blocks[k]["p50"] - 0.02 for k in keys)
    assert predict(config)["p50"] == pytest.approx(expected)
    assert predict(bank.largest_config())["p50"] > predict(bank.smallest_config())["p50"]
    other = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 32))
    with pytest.raises(ConfigError, match="another resnet_cifar bank"):
        LatencyPredictor(loaded, other)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "edgedistill-latency-lut/1", "runtime": 3}))
    with pytest.raises(ConfigError, match="bad.json"):
        LatencyLUT.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match=r"edgedistill\.profile\(\)"):
        LatencyLUT.load(tmp_path / "missing.json")


@pytest.mark.slow
def test_profile_builds_a_real_table_for_a_tiny_bank(tmp_path: Path) -> None:
    from edgedistill.recipe import load_recipe
    from edgedistill.search.measure import Timing
    from edgedistill.search.profile import profile_bank

    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16), blocks=(1, 1), strides=(1, 2),
                      width_choices=(0.5, 1.0))  # fmt: skip
    recipe = load_recipe(REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml")
    timing = Timing(runs=20, warmup=2, min_time_s=0.0)
    lut = profile_bank(bank, recipe, (1, 1, 16, 16), timing, tmp_path / "lut.json", show_progress=False)
    assert LatencyLUT.load(tmp_path / "lut.json") == lut
    assert set(lut.blocks) == set(distinct_blocks(bank, (1, 1, 16, 16)))
    assert all(v["p50"] > 0 for v in lut.blocks.values()) and lut.overhead_ms["p50"] > 0


# ---- UPEMs on synthetic predictions ------------------------------------------------------------


def _logits(labels: list[int], classes: int = 3, confidence: float = 4.0) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(labels), classes).float() * confidence


def test_agreement_counts_matches_with_the_ensemble() -> None:
    ref = Reference(_logits([0, 1, 2, 0]).softmax(1))
    one_image = 100 / 4
    assert 100.0 <= UPEMS.get("agreement")(Outputs(_logits([0, 1, 2, 0])), ref) < 100.0 + one_image
    half = UPEMS.get("agreement")(Outputs(_logits([0, 1, 0, 1])), ref)
    assert 50.0 <= half < 50.0 + one_image
    # Equal top-1 agreement: the more confident config ranks higher (tie-break term), never above one more match.
    sure = UPEMS.get("agreement")(Outputs(_logits([0, 1, 0, 1], confidence=8)), ref)
    assert half < sure < 75.0


def test_entropy_is_zero_for_one_hot_and_minus_one_for_uniform() -> None:
    ref = Reference(torch.full((2, 4), 0.25))
    assert UPEMS.get("entropy")(Outputs(_logits([0, 1], 4, 100.0)), ref) == pytest.approx(0.0, abs=1e-6)
    assert UPEMS.get("entropy")(Outputs(torch.zeros(2, 4)), ref) == pytest.approx(-1.0)


def test_discrepancy_needs_ostc_heads_and_measures_head_disagreement() -> None:
    ref = Reference(torch.full((2, 3), 1 / 3))
    with pytest.raises(ConfigError, match="OSTC heads C_s/C_t"):
        UPEMS.get("discrepancy")(Outputs(torch.zeros(2, 3)), ref)
    same = Outputs(torch.zeros(2, 3), {"C_s": _logits([0, 1], 3, 50.0), "C_t": _logits([0, 1], 3, 50.0)})
    apart = Outputs(torch.zeros(2, 3), {"C_s": _logits([0, 1], 3, 50.0), "C_t": _logits([1, 0], 3, 50.0)})
    assert UPEMS.get("discrepancy")(same, ref) == pytest.approx(0.0, abs=1e-6)
    assert UPEMS.get("discrepancy")(apart, ref) == pytest.approx(-2.0, abs=1e-4)
    with pytest.raises(RegistryError, match="did you mean 'entropy'"):
        UPEMS.get("entropi")


# ---- strategies on a synthetic objective with a known optimum ----------------------------------

CHOICES = [(0.25, 0.5, 0.75, 1.0)] * 4


def _problem(limit: float = 2.0) -> Problem:
    # Score prefers width on the last stages; cost is the plain sum of widths: the optimum is known by enumeration.
    weights = (1.0, 2.0, 3.0, 4.0)
    return Problem(
        CHOICES,
        feasible=lambda c: sum(c) <= limit,
        score=lambda c: sum(w * x for w, x in zip(weights, c, strict=True)) - 0.01 * c[0],
    )


def _optimum(problem: Problem) -> float:
    return max(problem.score(c) for c in itertools.product(*CHOICES) if problem.feasible(c))


@pytest.mark.parametrize("strategy", ["exhaustive", "evolutionary", "greedy", "predictor", "auto"])
def test_strategies_respect_constraints_and_reach_the_optimum(strategy: str) -> None:
    problem = _problem()
    settings = SearchSettings(strategy=strategy, population=20, evaluations=60, seed=1)
    SEARCH_STRATEGIES.get(strategy)(problem, settings)
    assert problem.scores and all(problem.feasible(c) for c in problem.scores)
    best = max(problem.scores.values())
    if strategy == "greedy":  # a single greedy path: near the optimum here, not guaranteed optimal
        assert best >= _optimum(problem) - 1.0
    else:
        assert best == pytest.approx(_optimum(problem))
    again = _problem()
    SEARCH_STRATEGIES.get(strategy)(again, settings)
    assert list(again.scores) == list(problem.scores)  # deterministic under the seed


def test_evolutionary_rejects_infeasible_and_stays_within_its_budget() -> None:
    problem = _problem(limit=1.5)
    SEARCH_STRATEGIES.get("evolutionary")(problem, SearchSettings(population=8, evaluations=15, seed=3))
    assert len(problem.scores) <= 15 and problem.rejected > 0
    assert all(sum(c) <= 1.5 for c in problem.scores)
    other = _problem(limit=1.5)
    SEARCH_STRATEGIES.get("evolutionary")(other, SearchSettings(population=8, evaluations=15, seed=4))
    assert list(other.scores) != list(problem.scores)


# ---- the search on a real bank -----------------------------------------------------------------


def _images(n: int = 16) -> UnlabeledImages:
    g = torch.Generator().manual_seed(0)
    return UnlabeledImages(bn=torch.randn(n, *SHAPE[1:], generator=g), eval=torch.randn(n, *SHAPE[1:], generator=g))


def test_search_widths_keeps_every_limit_and_reports_runner_ups() -> None:
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 32), width_choices=(0.5, 1.0)).eval()
    lut = _fake_lut(bank)
    predict = LatencyPredictor(lut, bank)
    estimate = CostEstimator(CostInputs(bank, SHAPE))
    lat = sorted(predict(c)["p90"] for c in bank.all_configs())
    limit, macs_m = lat[5], sorted(estimate(c).macs for c in bank.all_configs())[6] / 1e6
    limits = Limits(macs_m=macs_m, latency_ms=LatencyLimit(p90=limit))
    result = search_widths(bank, limits, SHAPE, _images(), lut=lut)
    chosen = result.chosen
    assert chosen.macs <= macs_m * 1e6 and chosen.latency_ms is not None and chosen.latency_ms["p90"] <= limit
    assert all(c.macs <= macs_m * 1e6 and c.latency_ms and c.latency_ms["p90"] <= limit for c in result.evaluated)
    assert result.rejected > 0 and len(result.runner_ups) == 3
    assert chosen.upem == max(c.upem for c in result.evaluated)
    assert json.loads(json.dumps(result.to_json()))["chosen"]["config"] == list(chosen.config)
    # The measured check: a config measured over the limit is passed over for the next one.
    slow = {chosen.config}

    def measure(config: tuple[float, ...]) -> dict[str, float]:
        v = 2 * limit if config in slow else limit / 2
        return {"p50": v, "p90": v, "p99": v, "mean": v}

    again = search_widths(bank, limits, SHAPE, _images(), lut=lut, measure=measure, shortlist=2)
    assert again.chosen.config != chosen.config and again.chosen.measured_ms is not None
    assert len(again.measured) == 2
    slow |= {c.config for c in again.evaluated}
    with pytest.raises(BudgetError, match="exceed the latency limit when measured"):
        search_widths(bank, limits, SHAPE, _images(), lut=lut, measure=measure, shortlist=2)
    with pytest.raises(BudgetError, match="no width config fits"):
        search_widths(bank, Limits(params_m=1e-6), SHAPE, _images())


def test_int8_budget_compares_the_measured_shortlist_after_quantization() -> None:
    """The UPEM-best config collapses in INT8 (its quantized logits are noise): with `int8_outputs` the whole
    shortlist is measured and the fitting config with the best INT8 agreement with the UPEM's FP32 reference is
    chosen."""
    from edgedistill.search.upem import ConfigOutputs

    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 32), width_choices=(0.5, 1.0)).eval()
    images = _images(64)
    macs_m = sorted(bank_cost(bank, c, SHAPE).macs for c in bank.all_configs())[-2] / 1e6  # all but the largest

    def measure(config: tuple[float, ...]) -> dict[str, float]:
        return dict.fromkeys(("p50", "p90", "p99", "mean"), 1.0)

    fp32 = search_widths(bank, Limits(macs_m=macs_m), SHAPE, images, measure=measure, shortlist=3)
    assert len(fp32.measured) == 1 and fp32.chosen.int8_agreement is None  # FP32 quality: the first that fits
    outputs = ConfigOutputs(bank, images.bn, images.eval)
    ensemble = UPEMS.get(fp32.upem).reference(outputs, bank.width_choices, bank.num_stages).ensemble
    noise = torch.randn(len(images.eval), 10, generator=torch.Generator().manual_seed(1))

    def int8_outputs(config: tuple[float, ...]) -> torch.Tensor:  # the others agree with the reference in INT8
        return noise if config == fp32.chosen.config else ensemble.log()

    int8 = search_widths(bank, Limits(macs_m=macs_m), SHAPE, images, measure=measure, shortlist=3,
                         int8_outputs=int8_outputs)  # fmt: skip
    assert [c.config for c in int8.measured] == [c.config for c in int8.evaluated[:3]]  # the whole shortlist
    assert int8.chosen.config == int8.evaluated[1].config != fp32.chosen.config
    collapsed = next(c for c in int8.measured if c.config == fp32.chosen.config)
    assert collapsed.int8_agreement is not None and int8.chosen.int8_agreement is not None
    assert collapsed.int8_agreement < 50.0 and int8.chosen.int8_agreement > 100.0  # 100% top-1 + the soft tie-break
    assert [m["int8_quality"] for m in int8.measure_log] == [c.int8_agreement for c in int8.measured]
    assert any(n.startswith(f"INT8-aware choice: {list(int8.chosen.config)}") for n in int8.notes), int8.notes


def test_int8_run_records_the_quantized_shortlist(trained_run: Path) -> None:
    """The session run's budget is ONNX Runtime INT8 on this CPU: train's search scored every measured config's INT8
    artifact (its real quantized logits), chose among them by that score and recorded it."""
    record = json.loads((trained_run / "search.json").read_text())
    measured = [m for m in record["measure_log"] if m["fits"]]
    assert measured and all(m["int8_quality"] is not None for m in record["measure_log"])
    best = max(measured, key=lambda m: m["int8_quality"])
    assert record["chosen"]["config"] == best["config"] and record["chosen"]["int8_agreement"] == best["int8_quality"]
    assert any(n.startswith("INT8-aware choice") for n in record["notes"])


# ---- pipeline and CLI ------------------------------------------------------------------------


def test_search_cli_writes_choice_for_another_budget_and_export_uses_it(trained_run: Path, tmp_path: Path) -> None:
    from edgedistill.pipeline.export import export_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint"))
    tight = tmp_path / "tight.yaml"
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text().replace("name: demo-cpu", "name: tight")
    tight.write_text(text.replace("macs_m: 12", "macs_m: 3"))
    r = subprocess.run(
        [sys.executable, "-m", "edgedistill", "search", "--budget", str(tight), "--run", str(run),
         "--measure", "off", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads((run / "searches" / "tight.json").read_text())
    assert record["budget"] == "tight" and record["chosen"]["macs"] <= 3e6
    assert record["runner_ups"] and record["upem"] == "agreement-widest" and not record["measured"]
    assert any("latency not measured" in n for n in record["notes"])
    ci = record["chosen"]["upem_ci"]
    assert ci[0] <= record["chosen"]["upem"] <= ci[1] and record["confidence"]["images"] > 0
    assert record["measure_log"] == [] and "95% CI" in r.stdout
    assert (run / "searches" / "tight.png").stat().st_size > 1000
    int8 = export_run(run, budget=tight, precision="int8")[-1]
    assert int8.source.config == record["chosen"]["config"]
    assert int8.source.subnet_sha256 == record["subnet_sha256"]
    bad = subprocess.run(
        [sys.executable, "-m", "edgedistill", "search", "--run", str(run), "--upem", "discrepancy",
         "--measure", "off", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "OSTC heads" in bad.stderr and "Traceback" not in bad.stderr


def test_profile_cli_rejects_bad_input(trained_run: Path) -> None:
    for args, msg in ((["--input", "28"], "HxW"), (["--runtime", "openvino"], "unknown profiling runtime")):
        r = subprocess.run(
            [sys.executable, "-m", "edgedistill", "profile", "--run", str(trained_run), *args, "--no-progress"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_config_outputs_expose_the_ostc_heads_of_a_tri_head_bank() -> None:
    """UPEM 'discrepancy' on a real OSTC bank (issue 5's C_s/C_t heads): a finite score ≤ 0 for every config."""
    from edgedistill.search.upem import ConfigOutputs

    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16), tri_head=True)
    outputs = ConfigOutputs(bank, torch.randn(40, 1, 28, 28), torch.randn(30, 1, 28, 28))
    out = outputs((0.5, 0.25, 1.0))
    assert out.heads is not None and {"C_a", "C_s", "C_t"} <= set(out.heads) and out.logits.shape == (30, 10)
    score = UPEMS.get("discrepancy")(out, Reference(torch.full((30, 10), 0.1)))
    assert -2.0 <= score <= 0.0
    plain = ConfigOutputs(
        build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16)),
        torch.randn(8, 1, 28, 28),
        torch.randn(6, 1, 28, 28),
    )
    assert plain((1.0, 1.0, 1.0)).heads is None


def test_config_outputs_run_each_config_once() -> None:
    """The ensemble reference's uniform configs are not run again when the search scores them."""
    from edgedistill.search.upem import ConfigOutputs

    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16))
    outputs = ConfigOutputs(bank, torch.randn(16, 1, 28, 28), torch.randn(12, 1, 28, 28))
    calls = []
    bank.classifier.register_forward_hook(lambda *_: calls.append(1))
    ensemble_reference(outputs, uniform_configs(bank))
    runs = len(calls)
    first = outputs((0.5, 0.5, 0.5)).logits
    assert len(calls) == runs and runs > 0  # a uniform config: kept from the reference
    outputs((0.25, 1.0, 0.5))
    assert len(calls) > runs
    assert torch.equal(outputs((0.5, 0.5, 0.5)).logits, first)
