"""UPEM references and the search's images (issue 20): `agreement-widest`, the default, and BN as shipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.budget.spec import Limits
from edgedistill.data import ImageSet, Preprocess, TaskData
from edgedistill.inputs import calibration_batches
from edgedistill.models import bank_cost, build_bank
from edgedistill.pipeline.search import unlabeled_images
from edgedistill.search import UnlabeledImages, search_widths
from edgedistill.search.upem import (
    UPEMS,
    ConfigOutputs,
    Outputs,
    timed_reference,
    uniform_configs,
    uniform_members,
    widest_member,
)

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def _logits(labels: list[int], classes: int = 3) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(labels), classes).float() * 4.0


def test_members_of_each_reference() -> None:
    assert uniform_members(WIDTHS, 2) == [(1.0, 1.0), (0.75, 0.75), (0.5, 0.5), (0.25, 0.25)]
    assert widest_member(WIDTHS, 3) == [(1.0, 1.0, 1.0)]
    assert UPEMS.get("agreement").members is uniform_members
    assert UPEMS.get("agreement-widest").members is widest_member
    assert all(UPEMS.get(n).about for n in UPEMS.names())


def test_agreement_widest_is_not_outvoted_by_the_narrow_widths() -> None:
    """The three narrow uniform widths share a mistake on the last image: the uniform ensemble takes it as the
    label, so `agreement` prefers a config that copies the mistake; `agreement-widest` prefers the widest's label."""
    preds = {(1.0, 1.0): [0, 1, 2, 0], (0.75, 0.75): [0, 1, 2, 1], (0.5, 0.5): [0, 1, 2, 1], (0.25, 0.25): [0, 1, 2, 1]}

    def outputs(config: tuple[float, ...]) -> Outputs:
        return Outputs(_logits(preds[config]))

    like_widest, like_narrow = Outputs(_logits([0, 1, 2, 0])), Outputs(_logits([0, 1, 2, 1]))
    for name, better in (("agreement", like_narrow), ("agreement-widest", like_widest)):
        upem = UPEMS.get(name)
        ref = upem.reference(outputs, WIDTHS, 2)
        worse = like_widest if better is like_narrow else like_narrow
        assert upem(better, ref) > upem(worse, ref), name


def test_agreement_widest_on_a_small_bank() -> None:
    """Its reference is the widest config's probabilities; the uniform widths are run once (they time one score)."""
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16))
    outputs = ConfigOutputs(bank, torch.randn(16, 1, 28, 28), torch.randn(12, 1, 28, 28))
    upem = UPEMS.get("agreement-widest")
    ref, per_score = timed_reference(upem, outputs)
    widest = outputs((1.0, 1.0, 1.0))
    assert per_score > 0 and set(outputs.seen) == set(uniform_configs(bank))
    assert torch.allclose(ref.ensemble, widest.logits.softmax(1))
    assert 100.0 <= upem(widest, ref) < 100.0 + 100 / 12
    assert 0.0 <= upem(outputs((0.25, 0.5, 0.25)), ref) <= 100.0 + 100 / 12
    uniform = UPEMS.get("agreement").reference(outputs, bank.width_choices, bank.num_stages)
    probs = torch.stack([outputs(c).logits.softmax(1) for c in uniform_configs(bank)])
    assert torch.allclose(uniform.ensemble, probs.mean(0))


def test_the_default_search_scores_agreement_with_the_widest_config() -> None:
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16)).eval()
    images = UnlabeledImages(bn=torch.randn(16, 1, 28, 28), eval=torch.randn(12, 1, 28, 28))
    macs = sorted(bank_cost(bank, c, (1, 1, 28, 28)).macs for c in bank.all_configs())
    result = search_widths(bank, Limits(macs_m=macs[len(macs) // 2] / 1e6), (1, 1, 28, 28), images)
    assert result.upem == "agreement-widest"
    outputs = ConfigOutputs(bank, images.bn, images.eval)
    upem = UPEMS.get("agreement-widest")
    ref = upem.reference(outputs, bank.width_choices, bank.num_stages)
    for c in result.evaluated:
        assert c.upem == pytest.approx(upem(outputs(c.config), ref), abs=1e-9)
    assert result.chosen.upem == max(c.upem for c in result.evaluated)


def _data(pool: int) -> TaskData:
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 255, (n, 1, 8, 8), dtype=np.uint8)

    labeled = ImageSet(images(4), np.arange(4) % 2)
    test = ImageSet(images(4), np.arange(4) % 2)
    return TaskData("synthetic", ["a", "b"], labeled, ImageSet(images(pool)), test, (0.5,), (0.5,))


def test_the_search_recalibrates_bn_as_shipped_and_scores_other_images() -> None:
    pre = Preprocess(8, 8, 1, (0.5,), (0.5,))
    data = _data(50)
    images = unlabeled_images(data, pre, torch.device("cpu"), n=20, bn_images=12)
    shipped = torch.cat(calibration_batches(data, pre, 12, torch.device("cpu")))
    assert torch.equal(images.bn, shipped) and len(images.eval) == 20
    assert not {tuple(x.flatten().tolist()) for x in images.eval} & {tuple(x.flatten().tolist()) for x in shipped}
    # More calibration images than scoring images (large inputs): BN on the first n of the shipped ones.
    big = unlabeled_images(data, pre, torch.device("cpu"), n=8, bn_images=30)
    assert torch.equal(big.bn, torch.cat(calibration_batches(data, pre, 30, torch.device("cpu")))[:8])
    # A pool with nothing besides the calibration images: they are scored too.
    small = unlabeled_images(_data(10), pre, torch.device("cpu"), n=20, bn_images=2000)
    assert len(small.bn) == len(small.eval) == 10 and torch.equal(small.bn, small.eval)
