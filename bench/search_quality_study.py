"""Scores behind the search quality report: test accuracy, every UPEM, and the variants studied for issue 20.

Each is computed from the outputs `bench/search_quality.py` recorded per config, never by running the bank again:
- `search`: as the search scores a config now (BN recalibrated on the chosen subnet's calibration images, UPEM on
  2,000 other unlabeled images up to 64 px);
- `pool`: as it scored before issue 20 (BN on 1,000 unlabeled images, UPEM on 1,000 others).
Variants that are not registered UPEMs (other references, the few labeled images) are defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgedistill.errors import ConfigError
from edgedistill.search.upem import UPEMS, Outputs, Reference, Score, Upem, agreement, neg_entropy

Config = tuple[float, ...]


def accuracies(record: dict[str, Any]) -> list[float]:
    """Test top-1 (%) of every evaluated config, BN recalibrated as the chosen subnet is."""
    labels = record["test_labels"]
    return [float((logits.float().argmax(1) == labels).float().mean()) * 100 for logits in record["test_logits"]]


def upem_scores(
    record: dict[str, Any], upem: Upem, setup: str = "search", images: int | None = None
) -> list[float] | None:
    """`upem` of every evaluated config from the outputs of `setup` (its first `images` scoring images); None when
    it does not apply (`discrepancy` without OSTC heads)."""
    index = {tuple(c): i for i, c in enumerate(record["configs"])}
    logits, heads = record["outputs"][setup]["logits"], record["outputs"][setup]["heads"]

    def outputs(config: Config) -> Outputs:
        i = index[tuple(config)]
        h = None if heads is None else {k: v[:images] for k, v in heads[i].items()}
        return Outputs(logits[i][:images], h)

    try:
        reference = upem.reference(outputs, record["width_choices"], record["num_stages"])
        return [upem(outputs(c), reference) for c in record["configs"]]
    except ConfigError:
        return None


def _every_config(record: dict[str, Any]) -> Callable[[Any, int], list[Config]]:
    return lambda widths, stages: [tuple(c) for c in record["configs"]]


def _two_widest(widths: Any, stages: int) -> list[Config]:
    return [(w,) * stages for w in sorted(widths)[-2:]]


def _soft_agreement(out: Outputs, ref: Reference) -> float:
    """Negative cross-entropy of the config's probabilities against the reference's (soft labels)."""
    return float((ref.ensemble * out.logits.float().log_softmax(1)).sum(1).mean())


def _confident_agreement(out: Outputs, ref: Reference) -> float:
    """`agreement` on the half of the images where the reference is most confident."""
    conf = ref.ensemble.max(1).values
    keep = conf >= conf.median()
    return agreement(Outputs(out.logits[keep]), Reference(ref.ensemble[keep]))


def _plus_entropy(weight: float) -> Score:
    """`agreement` plus `weight` × the negative normalised entropy (0 for one-hot predictions, −1 for uniform)."""
    return lambda out, ref: agreement(out, ref) + weight * neg_entropy(out, ref)


def _labeled(record: dict[str, Any], nll: bool) -> list[float]:
    labels = record["labeled_labels"]
    logp = record["labeled_logits"].float().log_softmax(2)
    if nll:
        return [float(lp.gather(1, labels[:, None]).mean()) for lp in logp]
    return [float((lp.argmax(1) == labels).float().mean()) * 100 for lp in logp]


def study_scores(record: dict[str, Any]) -> dict[str, list[float] | None]:
    """Every studied variant's score of every evaluated config (higher is better)."""
    widest = UPEMS.get("agreement-widest")
    out: dict[str, list[float] | None] = {}
    for name in ("agreement", "agreement-widest"):
        upem = UPEMS.get(name)
        out[f"{name}, BN and images as before (1,000 + 1,000 pool images)"] = upem_scores(record, upem, "pool")
        out[f"{name}, BN as shipped, 1,000 scoring images"] = upem_scores(record, upem, "search", 1000)
        out[f"{name}, BN as shipped, all scoring images (the search now)"] = upem_scores(record, upem)
    variants = {
        "agreement with the ensemble of every evaluated config": Upem(agreement, _every_config(record)),
        "agreement with the ensemble of the two widest uniform configs": Upem(agreement, _two_widest),
        "agreement with the uniform ensemble on its more confident half of the images": Upem(_confident_agreement),
        "soft agreement (−cross-entropy) with the widest config": Upem(_soft_agreement, widest.members),
        "agreement-widest + 5 × negative entropy": Upem(_plus_entropy(5.0), widest.members),
        "agreement-widest + 20 × negative entropy": Upem(_plus_entropy(20.0), widest.members),
    }
    for name, upem in variants.items():
        out[name] = upem_scores(record, upem)
    out["labeled images: top-1 (the bank trained on them)"] = _labeled(record, nll=False)
    out["labeled images: −NLL"] = _labeled(record, nll=True)
    return out
