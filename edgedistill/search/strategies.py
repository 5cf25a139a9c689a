"""Search strategies (registry): maximise an objective over width configs that satisfy a feasibility check.

Each strategy is deterministic under its seed, never scores an infeasible config (cheap cost checks reject them
first), and scores a config at most once. `auto` enumerates small spaces and runs the evolutionary search on large
ones, unless that would take longer than `time_budget_s` at the measured cost of one score (224-px banks, where one
score is seconds): then it runs `predictor`, a surrogate search that scores as many configs as the budget allows.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from edgedistill.config import StrictModel
from edgedistill.progress import Tracker, progress
from edgedistill.registry import Registry

Config = tuple[float, ...]


class SearchSettings(StrictModel):
    """Strategy settings (the defaults in docs/method.md)."""

    strategy: str = "auto"
    exhaustive_limit: int = 1024
    population: int = 100
    evaluations: int = 500
    mutation: float = 0.2
    max_rejections: int = 10_000
    seed: int = 0
    time_budget_s: float | None = Field(
        60.0, gt=0, description="auto: scoring time the search may take; above it, `predictor` with what fits"
    )
    predictor_initial: int = Field(4, ge=1, description="predictor: random feasible configs scored before the fit")
    predictor_min: int = Field(6, ge=1, description="auto: configs `predictor` scores at least, whatever the time")
    enumerate_limit: int = Field(65_536, ge=1, description="predictor: spaces up to this size are ranked whole")


@dataclass
class Problem:
    """What a strategy searches.

    Attributes:
        choices: Allowed widths per stage (ascending).
        feasible: Cheap check of the cost limits.
        score: Expensive objective (higher is better).
        show_progress: Draw a progress bar over scored configs.
    """

    choices: Sequence[Sequence[float]]
    feasible: Callable[[Config], bool]
    score: Callable[[Config], float]
    show_progress: bool = False
    seconds_per_score: float | None = None
    scores: dict[Config, float] = field(default_factory=dict)
    rejected: int = 0
    notes: list[str] = field(default_factory=list)
    used: str = ""

    def evaluate(self, config: Config) -> float:
        """Score once per config (cached)."""
        if config not in self.scores:
            self.scores[config] = self.score(config)
        return self.scores[config]

    def ok(self, config: Config) -> bool:
        if self.feasible(config):
            return True
        self.rejected += 1
        return False

    @property
    def space(self) -> int:
        return math.prod(len(c) for c in self.choices)


Strategy = Callable[[Problem, SearchSettings], None]
SEARCH_STRATEGIES: Registry[Strategy] = Registry("search strategy")


def _bar(problem: Problem, name: str, total: int, unit: str = "config") -> AbstractContextManager[Tracker]:
    return progress(f"search ({name})", total, show=problem.show_progress, unit=unit, transient=True)


@SEARCH_STRATEGIES.register("exhaustive")
def exhaustive(problem: Problem, settings: SearchSettings) -> None:
    """Every feasible config of the space."""
    feasible = [c for c in itertools.product(*problem.choices) if problem.ok(c)]
    with _bar(problem, "exhaustive", len(feasible)) as bar:
        for config in feasible:
            problem.evaluate(config)
            bar.advance()


def _random_feasible(problem: Problem, rng: random.Random, tries: int) -> Config | None:
    for _ in range(tries):
        config = tuple(rng.choice(list(c)) for c in problem.choices)
        if problem.ok(config):
            return config
    return None


def _child(problem: Problem, a: Config, b: Config, rng: random.Random, mutation: float) -> Config:
    """Uniform crossover, then each stage mutates to a random choice with probability `mutation`."""
    genes = [x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)]
    pairs = zip(genes, problem.choices, strict=True)
    return tuple(rng.choice(list(c)) if rng.random() < mutation else g for g, c in pairs)


@SEARCH_STRATEGIES.register("evolutionary")
def evolutionary(problem: Problem, settings: SearchSettings) -> None:
    """Population search: feasible random start, then children of the top half (crossover + mutation).

    Infeasible children are rejected and redrawn (rejection sampling); already scored ones cost nothing. Stops after
    `evaluations` scored configs, or when `max_rejections` draws in a row found nothing new.
    """
    rng = random.Random(settings.seed)
    budget = min(settings.evaluations, problem.space)
    with _bar(problem, "evolutionary", budget) as bar:
        population: list[Config] = []
        while len(population) < settings.population and len(problem.scores) < budget:
            config = _random_feasible(problem, rng, settings.max_rejections)
            if config is None:
                break
            if config not in problem.scores:
                problem.evaluate(config)
                bar.advance()
            population.append(config)
        stale = 0
        while population and len(problem.scores) < budget and stale < settings.max_rejections:
            ranked = sorted(set(population), key=lambda c: problem.scores[c], reverse=True)
            parents = ranked[: max(2, len(ranked) // 2)]
            a, b = rng.choice(parents), rng.choice(parents)
            child = _child(problem, a, b, rng, settings.mutation)
            if child in problem.scores or not problem.ok(child):
                stale += 1
                continue
            stale = 0
            problem.evaluate(child)
            bar.advance()
            population = [*ranked[: settings.population - 1], child]


@SEARCH_STRATEGIES.register("greedy")
def greedy(problem: Problem, settings: SearchSettings) -> None:
    """AutoSlim-style shrinking: from the widest config, narrow the one stage whose step costs least score.

    Every one-step-narrower neighbour is scored (feasible or not, since the path passes through configs over the
    budget), and the walk stops at the first feasible config; it is the only feasible config scored here, so the
    search picks it. Scores of infeasible configs are dropped.
    """
    config: Config = tuple(c[-1] for c in problem.choices)
    steps = sum(len(c) - 1 for c in problem.choices)
    scored: dict[Config, float] = {}
    with _bar(problem, "greedy", steps, unit="step") as bar:
        while not problem.feasible(config):
            neighbours = []
            for i, c in enumerate(problem.choices):
                j = list(c).index(config[i])
                if j > 0:
                    neighbours.append((*config[:i], c[j - 1], *config[i + 1 :]))
            if not neighbours:
                break
            for n in neighbours:
                if n not in scored:
                    scored[n] = problem.score(n)
            config = max(neighbours, key=lambda n: scored[n])
            bar.advance()
    if problem.ok(config):
        problem.evaluate(config)


def _features(configs: Sequence[Config]) -> np.ndarray:
    """Surrogate features: a constant and the log width of every stage."""
    return np.hstack([np.ones((len(configs), 1)), np.log(np.asarray(configs, dtype=np.float64))])


def _fit(configs: Sequence[Config], scores: Sequence[float], ridge: float = 1e-3) -> np.ndarray:
    """Ridge fit of score ≈ a + Σ_s b_s · log(w_s) (the constant is not penalised)."""
    x, y = _features(configs), np.asarray(scores, dtype=np.float64)
    penalty = ridge * len(y) * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(x.T @ x + penalty, x.T @ y)


def _candidates(problem: Problem, settings: SearchSettings, rng: random.Random) -> list[Config]:
    """Every feasible config of a space up to `enumerate_limit`, else that many feasible random draws."""
    if problem.space <= settings.enumerate_limit:
        return [c for c in itertools.product(*problem.choices) if problem.feasible(c)]
    drawn = {tuple(rng.choice(list(c)) for c in problem.choices) for _ in range(settings.enumerate_limit)}
    return [c for c in sorted(drawn) if problem.feasible(c)]


@SEARCH_STRATEGIES.register("predictor")
def predictor(problem: Problem, settings: SearchSettings) -> None:
    """Surrogate search for expensive scores: fit, score the best predicted config, refit; `evaluations` in all.

    Scores the feasible uniform widths (free after the bank-ensemble reference) and `predictor_initial` random
    feasible configs, fits score ≈ a + Σ_s b_s · log(w_s) on every scored config (ridge), then repeatedly scores the
    unscored feasible config the fit ranks highest (ties: more MACs saved come later, the order of the candidates).
    Every feasible config of the space is ranked (cheap: costs only), so the frontier of the budget is reached in a
    few scores.
    """
    rng = random.Random(settings.seed)
    candidates = _candidates(problem, settings, rng)
    budget = min(settings.evaluations, len(candidates))
    if not candidates:
        return
    with _bar(problem, "predictor", budget) as bar:
        uniform = [u for u in (tuple([w] * len(problem.choices)) for w in problem.choices[0]) if problem.ok(u)]
        first = uniform + rng.sample(candidates, min(settings.predictor_initial, len(candidates)))
        for config in dict.fromkeys(first):
            if len(problem.scores) >= budget:
                return
            problem.evaluate(config)
            bar.advance()
        x_all = _features(candidates)
        while len(problem.scores) < budget:
            scored = list(problem.scores)
            predicted = x_all @ _fit(scored, [problem.scores[c] for c in scored])
            order = np.argsort(-predicted, kind="stable")
            nxt = next((candidates[i] for i in order if candidates[i] not in problem.scores), None)
            if nxt is None:
                return
            problem.evaluate(nxt)
            bar.advance()


def _planned(problem: Problem, settings: SearchSettings) -> tuple[Strategy, str, int]:
    """The strategy `auto` would run by space size, and how many configs it would score."""
    if problem.space <= settings.exhaustive_limit:
        feasible = sum(1 for c in itertools.product(*problem.choices) if problem.feasible(c))
        return exhaustive, "exhaustive", feasible
    return evolutionary, "evolutionary", min(settings.evaluations, problem.space)


@SEARCH_STRATEGIES.register("auto")
def auto(problem: Problem, settings: SearchSettings) -> None:
    """`exhaustive` when the space has at most `exhaustive_limit` configs, else `evolutionary`; `predictor` instead
    when the planned scores would take longer than `time_budget_s` at `problem.seconds_per_score`."""
    strategy, name, planned = _planned(problem, settings)
    per, limit = problem.seconds_per_score, settings.time_budget_s
    if per is not None and limit is not None and planned * per > limit:
        n = max(settings.predictor_min, int(limit / per))
        problem.notes.append(
            f"auto: {name} would score {planned} configs at {per:.2f} s each ({planned * per:.0f} s > time budget "
            f"{limit:g} s), so the predictor search scored at most {n}"
        )
        strategy, name, settings = predictor, "predictor", settings.model_copy(update={"evaluations": n})
    problem.used = name
    start = time.perf_counter()
    strategy(problem, settings)
    problem.notes.append(f"auto: {name}, {len(problem.scores)} configs scored in {time.perf_counter() - start:.1f} s")
