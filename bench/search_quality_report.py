"""Search quality report (issue 20): each UPEM's Spearman ρ with test accuracy and each UPEM + strategy's regret.

Reads the outputs `bench/search_quality.py` recorded per bank (`<runs>/<bank>/search_quality.pt`), computes every
registered UPEM (`UPEMS`) from them exactly as the search does, and, per budget, runs each strategy on those scores
(the same `SEARCH_STRATEGIES` code) and compares its choice with the best feasible config by test accuracy. A study
section scores the variants that were tried on the way (`bench/search_quality_study.py`) with the exhaustive search.

Budgets per bank: the run's own budget (its MACs and params limits; latency limits need a latency table and are left
out here) and limits of a fraction of the widest config's MACs (`--fractions`), so that many configs are feasible.
Spaces that were sampled (`--sample` of the evaluation) are searched within the sample; `greedy` needs the scores of
configs outside it and is then left out.

    python bench/search_quality_report.py [--runs runs/search-quality] [--fractions 0.5]
        [--strategies auto greedy predictor] [--out bench/results/search_quality]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr

from edgedistill.bench.machine import machine_info, package_versions
from edgedistill.search import SEARCH_STRATEGIES, UPEMS, Problem, SearchSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import CACHE  # noqa: E402
from search_quality_study import accuracies, study_scores, upem_scores  # noqa: E402
from search_quality_tables import markdown  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
Config = tuple[float, ...]
PREDICTOR_SCORES = 8  # what `auto` gives the predictor at 224 px (60 s at about 7 s per score)


def budgets(record: dict[str, Any], fractions: list[float]) -> list[tuple[str, float | None, float | None]]:
    """(name, MACs limit M, params limit M): the run's budget, then fractions of the widest config's MACs."""
    b = record["budget"]
    out = [(str(b["name"]), b["macs_m"], b["params_m"])] if b["macs_m"] or b["params_m"] else []
    widest = max(record["macs"]) / 1e6
    return out + [(f"≤ {f:.0%} MACs", widest * f, None) for f in fractions]


def choose(
    record: dict[str, Any], scores: list[float], feasible: set[Config], strategy: str, seed: int
) -> Config | None:
    """The config `strategy` picks on these scores: the highest score, more MACs first on ties (as the search)."""
    index = {tuple(c): i for i, c in enumerate(record["configs"])}
    macs = record["macs"]
    choices = [sorted(record["width_choices"])] * record["num_stages"]
    settings = SearchSettings(strategy=strategy, seed=seed, time_budget_s=None)
    if strategy == "predictor":
        settings = settings.model_copy(update={"evaluations": PREDICTOR_SCORES})
    problem = Problem(choices, lambda c: tuple(c) in feasible, lambda c: scores[index[tuple(c)]])
    try:
        SEARCH_STRATEGIES.get(strategy)(problem, settings)
    except KeyError:  # greedy on a sampled space: a neighbour outside the sample
        return None
    if not problem.scores:
        return None
    return max(problem.scores, key=lambda c: (problem.scores[c], macs[index[tuple(c)]]))


def _rho(scores: list[float], acc: list[float], idx: list[int]) -> float | None:
    picked = [scores[i] for i in idx]
    if len(idx) < 3 or len(set(picked)) < 2:
        return None
    return float(spearmanr(picked, [acc[i] for i in idx])[0])


def bank_result(record: dict[str, Any], fractions: list[float], strategies: list[str], seed: int) -> dict[str, Any]:
    """ρ per UPEM (all configs and feasible ones) and, per budget, the regret of every UPEM + strategy."""
    acc = accuracies(record)
    configs = [tuple(c) for c in record["configs"]]
    every = list(range(len(configs)))
    sampled = len(configs) < record["space"]
    scores = {n: upem_scores(record, UPEMS.get(n)) for n in UPEMS.names()}
    study = study_scores(record)
    rows = []
    for name, macs_m, params_m in budgets(record, fractions):
        idx = [
            i
            for i, (m, p) in enumerate(zip(record["macs"], record["params"], strict=True))
            if (macs_m is None or m / 1e6 <= macs_m) and (params_m is None or p / 1e6 <= params_m)
        ]
        if not idx:
            continue
        feasible = {configs[i] for i in idx}
        best = max(idx, key=lambda i: acc[i])
        row: dict[str, Any] = {"budget": name, "macs_m": macs_m, "params_m": params_m, "feasible": len(idx)}
        row |= {"best": list(configs[best]), "best_accuracy": acc[best], "rho": {}, "regret": {}, "chosen": {}}
        for n, s in scores.items():
            if s is None:
                continue
            row["rho"][n] = _rho(s, acc, idx)
            for strategy in strategies:
                chosen = None if strategy == "greedy" and sampled else choose(record, s, feasible, strategy, seed)
                if chosen is not None:
                    row["regret"][f"{n}+{strategy}"] = acc[best] - acc[configs.index(chosen)]
                    row["chosen"][f"{n}+{strategy}"] = list(chosen)
        row["study"] = {}
        for n, s in study.items():
            if s is not None:
                chosen = choose(record, s, feasible, "exhaustive", seed)
                regret = None if chosen is None else acc[best] - acc[configs.index(chosen)]
                row["study"][n] = {"rho": _rho(s, acc, idx), "regret": regret}
        rows.append(row)
    uniform = {str(w): acc[configs.index((w,) * record["num_stages"])] for w in sorted(record["width_choices"])}
    return {
        "bank": record["name"],
        "task": record["task"],
        "labels_per_class": record["labels_per_class"],
        "family": record["family"],
        "configs": len(configs),
        "space": record["space"],
        "accuracy_range": [min(acc), max(acc)],
        "uniform_accuracy": uniform,
        "images": record["images"],
        "rho": {n: None if s is None else _rho(s, acc, every) for n, s in scores.items()},
        "study_rho": {n: None if s is None else _rho(s, acc, every) for n, s in study.items()},
        "budgets": rows,
    }


def _mean_worst(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        k: {"mean": statistics.fmean(v), "worst": max(v), "cases": len(v)}
        for k, v in sorted(values.items(), key=lambda kv: (statistics.fmean(kv[1]), max(kv[1])))
    }


def summary(banks: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst regret of every UPEM + strategy (and study variant) over every bank and budget."""
    regrets: dict[str, list[float]] = {}
    study: dict[str, list[float]] = {}
    for b in banks:
        for row in b["budgets"]:
            for k, v in row["regret"].items():
                regrets.setdefault(k, []).append(v)
            for k, v in row["study"].items():
                if v["regret"] is not None:
                    study.setdefault(k, []).append(v["regret"])
    return {"regret": _mean_worst(regrets), "study": _mean_worst(study)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/search-quality")
    p.add_argument("--banks", nargs="*", default=None, help="bank folders under --runs (default: all evaluated)")
    p.add_argument("--fractions", nargs="*", type=float, default=[0.5])
    p.add_argument("--strategies", nargs="*", default=["auto", "greedy", "predictor"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/search_quality")
    args = p.parse_args()
    torch.set_num_threads(1)
    runs = REPO / args.runs
    files = [runs / b / CACHE for b in args.banks] if args.banks else sorted(runs.glob(f"*/{CACHE}"))
    banks = []
    for f in files:
        banks.append(bank_result(torch.load(f, weights_only=False), args.fractions, args.strategies, args.seed))
        print(json.dumps({k: banks[-1][k] for k in ("bank", "rho")}), flush=True)
    result = {
        "command": " ".join(["python", "bench/search_quality_report.py", *sys.argv[1:]]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions(["torch", "edgedistill"]),
        "strategies": args.strategies,
        "predictor_scores": PREDICTOR_SCORES,
        "upems": {n: UPEMS.get(n).about for n in UPEMS.names()},
        "summary": summary(banks),
        "banks": banks,
    }
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(out.with_suffix(".md"))


if __name__ == "__main__":
    main()
