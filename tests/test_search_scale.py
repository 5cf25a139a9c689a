"""The search at 224-px scale: stage-additive cost counts, the predictor strategy and auto's time budget,
search image counts by input size, and the pretrained learning-rate groups."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from edgedistill.data import Preprocess
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.loop import param_groups
from edgedistill.models import build_bank, count_cost
from edgedistill.search import SEARCH_STRATEGIES, CostEstimator, CostInputs, Problem, SearchSettings
from edgedistill.search.blocks import plain_net
from edgedistill.search.costs import StageAdditiveCount, additive_count

LITE0 = {"model": "tf_efficientnet_lite0"}
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return build_bank("timm", 10, 3, **LITE0).eval()


def _exact(bank, shape):
    return lambda c: count_cost(plain_net(bank, c), shape)


def test_additive_count_is_exact_for_the_timm_bank(lite0) -> None:
    exact = _exact(lite0, SHAPE)
    model = additive_count(lite0, exact)
    assert model is not None and not model.pairs  # only mid channels are elastic: first order is exact
    for config in [(0.25, 1.0, 0.5, 0.75, 1.0, 0.25), (1.0, 0.5, 0.25, 0.25, 0.75, 1.0)]:
        assert model(config) == exact(config)


@pytest.mark.parametrize(
    ("family", "kwargs", "shape"),
    [
        ("mobilenet", {"width_choices": (0.5, 1.0)}, (1, 3, 32, 32)),  # 7 stages; 2 choices keep the test short
        ("resnet_cifar", {"base_channels": (16, 32, 64)}, (1, 1, 28, 28)),
    ],
)
def test_coupled_families_get_the_exact_second_order_count(family, kwargs, shape) -> None:
    # Their stage outputs are elastic, so a block's cost depends on two neighbouring stages: first order is refused.
    torch.manual_seed(0)
    bank = build_bank(family, 10, shape[1], **kwargs).eval()
    exact = _exact(bank, shape)
    assert not StageAdditiveCount(bank, exact).exact_on([bank.smallest_config()], exact)
    model = additive_count(bank, exact)
    assert model is not None and model.pairs
    estimate = CostEstimator(CostInputs(bank, shape))
    rng = random.Random(3)
    for _ in range(4):
        config = tuple(rng.choice(bank.width_choices) for _ in range(bank.num_stages))
        ref = _exact(bank, shape)(config)
        assert (estimate(config).macs, estimate(config).params) == (ref.macs, ref.params)


def _problem(stages: int = 7, limit: float = 4.0, per_score: float | None = None) -> Problem:
    # 4^7 = 16,384 configs; the score grows with log width, weighted towards late stages; cost: sum of widths.
    weights = [1.0 + i for i in range(stages)]
    return Problem(
        [(0.25, 0.5, 0.75, 1.0)] * stages,
        feasible=lambda c: sum(c) <= limit,
        score=lambda c: sum(w * torch.log(torch.tensor(x)).item() for w, x in zip(weights, c, strict=True)),
        seconds_per_score=per_score,
    )


def test_predictor_finds_the_optimum_of_a_7_stage_space_in_few_scores() -> None:
    problem = _problem()
    best = max(problem.score(c) for c in itertools.product(*problem.choices) if problem.feasible(c))
    SEARCH_STRATEGIES.get("predictor")(problem, SearchSettings(evaluations=12, seed=0))
    assert len(problem.scores) <= 12 and all(problem.feasible(c) for c in problem.scores)
    assert max(problem.scores.values()) == pytest.approx(best)
    again = _problem()
    SEARCH_STRATEGIES.get("predictor")(again, SearchSettings(evaluations=12, seed=0))
    assert list(again.scores) == list(problem.scores)


def test_auto_switches_to_the_predictor_when_scores_would_exceed_the_time_budget() -> None:
    slow = _problem(per_score=5.0)  # 500 evolutionary scores × 5 s > 60 s
    SEARCH_STRATEGIES.get("auto")(slow, SearchSettings(time_budget_s=60))
    assert slow.used == "predictor" and len(slow.scores) == 12
    assert "time budget 60 s" in slow.notes[0]
    fast = _problem(per_score=0.001)
    SEARCH_STRATEGIES.get("auto")(fast, SearchSettings(evaluations=40, population=10))
    assert fast.used == "evolutionary" and len(fast.scores) == 40
    unknown = _problem(stages=3)  # no timing known: the space size decides, as before
    SEARCH_STRATEGIES.get("auto")(unknown, SearchSettings())
    assert unknown.used == "exhaustive"


def test_search_settings_reject_a_bad_time_budget() -> None:
    with pytest.raises(ValueError, match="time_budget_s"):
        SearchSettings(time_budget_s=0)


def test_search_images_shrink_with_the_input_size() -> None:
    from edgedistill.pipeline.search import MIN_SEARCH_IMAGES, SEARCH_IMAGES, search_images

    def pre(px: int) -> Preprocess:
        return Preprocess(px, px, 3, (0.5,), (0.5,))

    assert search_images(pre(28)) == search_images(pre(64)) == SEARCH_IMAGES
    assert SEARCH_IMAGES > search_images(pre(96)) > search_images(pre(128)) >= MIN_SEARCH_IMAGES
    assert search_images(pre(224)) == MIN_SEARCH_IMAGES


def test_pretrained_layers_train_at_the_scaled_learning_rate() -> None:
    cfg = TrainConfig(lr=1e-2, pretrained_lr_scale=0.1)
    head = torch.nn.Linear(4, 4)
    torch.manual_seed(0)
    scratch = build_bank("mobilenet", 10, 3)
    (only,) = param_groups(scratch, head, cfg)
    assert only["lr"] == 1e-2 and len(only["params"]) == len(list(scratch.parameters())) + 2
    pretrained = build_bank("timm", 10, 3, weights="packaged:efficientnet_lite0", **LITE0)
    new, old = param_groups(pretrained, head, cfg)
    assert (new["lr"], old["lr"]) == (1e-2, pytest.approx(1e-3))
    classifier = {id(p) for p in pretrained.classifier_layer().parameters()}
    assert classifier <= {id(p) for p in new["params"]} and not classifier & {id(p) for p in old["params"]}
    assert len(new["params"]) + len(old["params"]) == len(list(pretrained.parameters())) + 2
    with pytest.raises(ValueError, match="pretrained_lr_scale"):
        TrainConfig(pretrained_lr_scale=0)
