"""`precision: auto`: which of the exported precisions to deploy, from recorded timings and accuracy drops (pure).

Rules, in order:

1. A reduced precision (fp16, int8) whose test top-1 drop exceeds the budget's `accuracy.max_int8_drop_pts` is not
   kept (FP16 has the same drop budget as INT8). FP32 is the reference and is always kept.
2. A kept reduced precision must be at least `PAYS_AT` (1.1×) faster than FP32 at p50, and faster at p90 too when
   the tails were timed: a smaller gain, or one bought with a longer tail, does not pay for the accuracy it costs.
3. Of FP32 and the reduced precisions that pay, the fastest at p50 deploys (a tie goes to the higher precision).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edgedistill.bench.pays import PAYS_AT
from edgedistill.errors import BenchError

if TYPE_CHECKING:
    from edgedistill.budget.spec import Budget

PRECISION_ORDER = ("fp32", "fp16", "int8")  # highest first: wins ties


@dataclass(frozen=True)
class CandidateOutcome:
    """One exported precision and what the decision made of it.

    Attributes:
        precision: fp32, fp16 or int8.
        target: Its artifact folder name (`openvino-fp16`, ...).
        p50_ms: Its recorded p50; None when it was not timed.
        drop_pts: FP32 top-1 minus its top-1 on the test split; None for FP32.
        speedup_vs_fp32: FP32 p50 / its p50; None for FP32 or when not timed.
        kept: Within the accuracy budget and timed.
        pays: A reduced precision at least `PAYS_AT` faster than FP32 (FP32: True).
        deployed: The one chosen.
        reason: One line: what was measured and what followed from it.
        p90_ms: Its recorded p90; None when the tails were not given.
    """

    precision: str
    target: str
    p50_ms: float | None
    drop_pts: float | None
    speedup_vs_fp32: float | None
    kept: bool
    pays: bool
    deployed: bool
    reason: str
    p90_ms: float | None = None


@dataclass(frozen=True)
class PrecisionChoice:
    """The deployed precision of a `precision: auto` budget, with every candidate and the reasons."""

    precision: str
    target: str
    candidates: tuple[CandidateOutcome, ...]
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "target": self.target,
            "candidates": [asdict(c) for c in self.candidates],
            "reasons": list(self.reasons),
        }

    def summary(self) -> str:
        """One line: what deployed, FP32's p50/p90 and every other timed candidate's reason (its speedup, p90, drop)."""
        parts = [
            f"fp32 {c.p50_ms:.3f} ms p50" if c.precision == "fp32" else c.reason
            for c in self.candidates
            if c.precision != "fp32" or c.p50_ms is not None
        ]
        return f"precision auto deployed {self.target}: {'; '.join(parts)}"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PrecisionChoice:
        return cls(
            precision=d["precision"],
            target=d["target"],
            candidates=tuple(CandidateOutcome(**c) for c in d.get("candidates", [])),
            reasons=tuple(d.get("reasons", [])),
        )


def _outcome(
    p: str,
    target: str,
    t: float | None,
    drop: float | None,
    fp32: float,
    max_drop: float,
    pays_at: float,
    tail: tuple[float, float] | None = None,
) -> CandidateOutcome:
    """Kept/pays for one precision, with the measured half of its reason (the decision is appended later).

    `tail`: (this precision's p90, FP32's p90) when the tails were timed.
    """
    if p != "fp32" and drop is not None and drop > max_drop:
        why = f"{p}: drops {drop:.2f} pts, over accuracy.max_int8_drop_pts {max_drop:g} → not kept"
        return CandidateOutcome(p, target, t, drop, None if t is None else fp32 / t, False, False, False, why)
    if t is None:
        return CandidateOutcome(p, target, None, drop, None, False, False, False, f"{p}: not timed → not considered")
    if p == "fp32":
        return CandidateOutcome(p, target, t, None, None, True, True, False, f"fp32: {t:.3f} ms p50 (the reference)")
    speedup = fp32 / t if t > 0 else float("inf")
    pays = speedup >= pays_at
    drop_text = "" if drop is None else f", drop {drop:.2f} pts"
    tail_text = "" if tail is None else f", p90 {tail[0]:.3f} vs {tail[1]:.3f} ms"
    why = f"{p}: {speedup:.2f}× over fp32 ({t:.3f} ms p50{tail_text}{drop_text})"
    if not pays:
        why += f", less than {pays_at:g}×"
    elif tail is not None and tail[0] >= tail[1]:
        pays = False
        why += ", but its p90 is not below fp32's"
    p90 = None if tail is None else tail[0]
    return CandidateOutcome(p, target, t, drop, speedup, True, pays, False, why, p90)


def choose_precision(
    timings: Mapping[str, float],
    drops: Mapping[str, float | None],
    budget: Budget,
    *,
    targets: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
    pays_at: float = PAYS_AT,
    tails: Mapping[str, float] | None = None,
) -> PrecisionChoice:
    """Pick the precision to deploy (module docstring) from p50 timings and accuracy drops.

    Args:
        timings: precision → recorded p50 in ms, for every precision that was timed (FP32 is required).
        drops: precision → test top-1 drop vs FP32 in points, for every exported precision.
        budget: The budget; its `accuracy.max_int8_drop_pts` bounds FP16 and INT8 alike.
        targets: precision → artifact folder name; default `<runtime>-<precision>`.
        skipped: precision → why it was not exported (listed first among the reasons).
        pays_at: The speedup over FP32 a reduced precision must reach.
        tails: precision → recorded p90 in ms; a reduced precision must then be faster than FP32 at p90 as well.

    Raises:
        BenchError: No FP32 timing to compare with.
    """
    if "fp32" not in timings:
        raise BenchError("precision auto needs the FP32 artifact's timing to compare the others with")
    fp32, max_drop = timings["fp32"], budget.accuracy.max_int8_drop_pts
    names = {p: (targets or {}).get(p, f"{budget.target.runtime}-{p}") for p in PRECISION_ORDER}
    present = [p for p in PRECISION_ORDER if p in timings or p in drops]
    fp32_tail = (tails or {}).get("fp32")

    def p90_pair(p: str) -> tuple[float, float] | None:
        mine = (tails or {}).get(p)
        return None if p == "fp32" or mine is None or fp32_tail is None else (mine, fp32_tail)

    outcomes = [
        _outcome(p, names[p], timings.get(p), drops.get(p), fp32, max_drop, pays_at, p90_pair(p)) for p in present
    ]
    eligible = [o for o in outcomes if o.kept and o.pays]
    best = min(eligible, key=lambda o: (o.p50_ms, PRECISION_ORDER.index(o.precision)))
    final = []
    for o in outcomes:
        if o is best:
            final.append(CandidateOutcome(**{**asdict(o), "deployed": True, "reason": o.reason + " → deployed"}))
        elif o.kept:
            tail = f" → deployed {best.precision}" if not o.pays else f" → {best.precision} is faster"
            final.append(CandidateOutcome(**{**asdict(o), "reason": o.reason + tail}))
        else:
            final.append(o)
    notes = [f"{p}: {why}" for p, why in (skipped or {}).items()]
    return PrecisionChoice(best.precision, best.target, tuple(final), (*notes, *(o.reason for o in final)))
