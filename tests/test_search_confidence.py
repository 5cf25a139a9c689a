"""Measuring past a too-slow shortlist without a latency table, and the UPEM's confidence intervals (issue 20)."""

from __future__ import annotations

import json

import pytest
import torch

from edgedistill.budget.spec import LatencyLimit, Limits
from edgedistill.errors import BudgetError
from edgedistill.models import build_bank
from edgedistill.report.markdown import _confidence_lines
from edgedistill.search import CostEstimator, CostInputs, UnlabeledImages, search_widths
from edgedistill.search.confidence import assess, bootstrap_scores
from edgedistill.search.upem import UPEMS, Outputs, Reference
from edgedistill.search.verify import verify

SHAPE = (1, 1, 28, 28)


def _stats(v: float) -> dict[str, float]:
    return {"p50": v, "p90": v, "p99": v, "mean": v}


def _recorded(table: dict[tuple[float, ...], float]):  # type: ignore[no-untyped-def]
    """A measurement that replays recorded timings (ms per config) and counts its calls."""
    calls: list[tuple[float, ...]] = []

    def measure(config: tuple[float, ...]) -> dict[str, float]:
        calls.append(config)
        return _stats(table[config])

    return measure, calls


def _over(limit: float):  # type: ignore[no-untyped-def]
    return lambda config, ms: [] if ms["p90"] <= limit else [f"measured p90 {ms['p90']:.3f} ms > {limit}"]


# ---- the measured check on recorded timings ----------------------------------------------------

# Ranked best UPEM first: (config, MACs). Latency on this "machine" is 0.1 ms + 1 ms per M MACs.
RANKED = [((1.0,), 9_000_000), ((0.9,), 8_000_000), ((0.8,), 7_000_000), ((0.5,), 4_000_000),
          ((0.7,), 6_000_000), ((0.3,), 2_000_000), ((0.2,), 1_000_000)]  # fmt: skip
TIMINGS = {c: 0.1 + m / 1e6 for c, m in RANKED}


def test_verify_keeps_measuring_cheaper_configs_until_one_fits() -> None:
    measure, calls = _recorded(TIMINGS)
    v = verify(RANKED, measure, _over(4.5), shortlist=3, fallback=True, limit=6)
    assert v.chosen is not None and v.fallback and not v.exhausted
    chosen = RANKED[v.chosen]
    assert TIMINGS[chosen[0]] <= 4.5 and chosen[0] == (0.5,)  # the best UPEM of those that fit
    assert calls[:3] == [(1.0,), (0.9,), (0.8,)] and len(calls) <= 6
    assert [m.why.startswith("shortlist") for m in v.log][:3] == [True] * 3
    assert all("MACs" in m.why for m in v.log[3:]) and v.log[-1].fits
    # every fallback measurement was cheaper than every miss before it
    for k, m in enumerate(v.log[3:], start=3):
        assert m.macs < min(p.macs for p in v.log[:k] if not p.fits)
    record = json.loads(json.dumps([m.to_json() for m in v.log]))
    assert record[-1]["fits"] and record[0]["over"] and record[0]["why"]


def test_verify_stops_when_no_cheaper_config_is_left_or_at_the_limit() -> None:
    measure, calls = _recorded(TIMINGS)
    none_fit = verify(RANKED, measure, _over(0.5), shortlist=3, fallback=True, limit=20)
    assert none_fit.chosen is None and none_fit.exhausted and (0.2,) in calls
    measure, calls = _recorded(TIMINGS)
    capped = verify(RANKED, measure, _over(0.5), shortlist=3, fallback=True, limit=4)
    assert capped.chosen is None and not capped.exhausted and len(calls) == 4
    measure, calls = _recorded(TIMINGS)
    with_table = verify(RANKED, measure, _over(4.5), shortlist=3, fallback=False, limit=6)
    assert with_table.chosen is None and len(calls) == 3  # a latency table is trusted: no fallback


def _bank() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 32), width_choices=(0.5, 1.0)).eval()


def _images(n: int = 32) -> UnlabeledImages:
    g = torch.Generator().manual_seed(0)
    return UnlabeledImages(bn=torch.randn(n, *SHAPE[1:], generator=g), eval=torch.randn(n, *SHAPE[1:], generator=g))


def test_search_without_a_table_measures_past_a_too_slow_shortlist() -> None:
    bank = _bank()
    estimate = CostEstimator(CostInputs(bank, SHAPE))
    timings = {c: 0.05 + estimate(c).macs / 1e7 for c in bank.all_configs()}  # recorded: ms grows with MACs
    first = search_widths(bank, Limits(), SHAPE, _images())
    cheapest = min(timings.values())
    assert timings[first.chosen.config] > cheapest  # the best UPEM config is not the fastest one
    limit = cheapest / 0.95 * 1.001  # only the cheapest config(s) fit, with the 5% margin
    measure, calls = _recorded(timings)
    result = search_widths(
        bank, Limits(latency_ms=LatencyLimit(p90=limit)), SHAPE, _images(), measure=measure, shortlist=1
    )
    assert result.chosen.measured_ms is not None and result.chosen.measured_ms["p90"] <= limit * 0.95
    assert len(calls) > 1 and calls[0] == first.chosen.config
    record = json.loads(json.dumps(result.to_json()))
    assert [m["config"] for m in record["measure_log"]] == [list(c) for c in calls]
    assert record["measure_log"][-1]["fits"] and not record["measure_log"][0]["fits"]
    assert any("no latency table" in n and "measure_log" in n for n in record["notes"])
    misses = [m["macs"] for m in record["measure_log"] if not m["fits"]]
    assert all(r["macs"] < min(misses) for r in record["runner_ups"])  # runner-ups are not known to be too slow


def test_search_without_a_table_fails_in_one_line_when_nothing_fits() -> None:
    bank = _bank()
    estimate = CostEstimator(CostInputs(bank, SHAPE))
    timings = {c: 1.0 + estimate(c).macs / 1e7 for c in bank.all_configs()}
    measure, _ = _recorded(timings)
    limits = Limits(latency_ms=LatencyLimit(p90=0.5))
    with pytest.raises(BudgetError, match="no width config fits the latency limit") as e:
        search_widths(bank, limits, SHAPE, _images(), measure=measure, shortlist=1, measure_limit=50)
    assert "\n" not in str(e.value) and "relax the budget" in str(e.value)
    measure, _ = _recorded(timings)
    with pytest.raises(BudgetError, match="raise measure_limit") as e:
        search_widths(bank, limits, SHAPE, _images(), measure=measure, shortlist=1, measure_limit=2)
    assert "\n" not in str(e.value)


# ---- confidence intervals ----------------------------------------------------------------------


def test_bootstrap_is_seeded_and_intervals_hold_the_point_estimate() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(3, (200,), generator=g)
    ref = Reference(torch.nn.functional.one_hot(labels, 3).float())
    agree = Outputs(torch.nn.functional.one_hot(labels, 3).float() * 5)
    noisy = Outputs(torch.randn(200, 3, generator=g))
    metric = UPEMS.get("agreement")
    scores = bootstrap_scores(metric, [agree, noisy], ref, resamples=50, seed=3)
    assert scores.shape == (2, 50) and torch.equal(
        scores, bootstrap_scores(metric, [agree, noisy], ref, resamples=50, seed=3)
    )
    points = [metric(agree, ref), metric(noisy, ref)]
    cis, conf = assess([(1.0,), (0.5,)], points, scores, images=200, seed=3)
    assert all(lo <= p <= hi for (lo, hi), p in zip(cis, points, strict=True))
    assert cis[1][1] < cis[0][0] and conf.warning is None and conf.within_noise == []
    assert conf.chosen_wins == [1.0] and conf.images == 200 and conf.resamples == 50


def test_overlapping_runner_up_is_flagged_within_the_noise() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.stack([70 + torch.randn(100, generator=g), 69.8 + torch.randn(100, generator=g),
                          50 + torch.randn(100, generator=g)]).double()  # fmt: skip
    cis, conf = assess([(1.0,), (0.75,), (0.5,)], [70.0, 69.8, 50.0], scores, images=1000)
    assert conf.within_noise == [(0.75,)] and conf.warning is not None
    assert "[0.75]" in conf.warning and "within the noise" in conf.warning and "1000 scoring images" in conf.warning
    assert 0.0 < conf.chosen_wins[0] < 1.0 and conf.chosen_wins[1] == 1.0
    record = json.loads(json.dumps(conf.to_json()))
    assert record["within_noise"] == [[0.75]] and record["level"] == 0.95


def test_search_records_intervals_for_the_chosen_config_and_runner_ups() -> None:
    result = search_widths(_bank(), Limits(), SHAPE, _images())
    group = [result.chosen, *result.runner_ups]
    assert len(result.runner_ups) == 3
    for c in group:
        assert c.upem_ci is not None and c.upem_ci[0] <= c.upem <= c.upem_ci[1]
    record = json.loads(json.dumps(result.to_json()))
    assert record["chosen"]["upem_ci"] and all(r["upem_ci"] for r in record["runner_ups"])
    conf = record["confidence"]
    assert conf["images"] == 32 and conf["resamples"] == 200 and len(conf["chosen_wins"]) == 3
    # 32 random images cannot separate configs of an untrained bank: the warning says so
    assert conf["within_noise"] and "within the noise" in conf["warning"]
    lines = "\n".join(_confidence_lines(record))
    assert "95% CI" in lines and "**Warning:**" in lines and str(list(result.chosen.config)) in lines
