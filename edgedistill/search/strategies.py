"""Search strategies (registry): maximise an objective over width configs that satisfy a feasibility check.

Each strategy is deterministic under its seed, never scores an infeasible config (cheap cost checks reject them
first), and scores a config at most once. `auto` enumerates small spaces and runs the evolutionary search on large
ones.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

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
    scores: dict[Config, float] = field(default_factory=dict)
    rejected: int = 0

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


@SEARCH_STRATEGIES.register("auto")
def auto(problem: Problem, settings: SearchSettings) -> None:
    """`exhaustive` when the space has at most `exhaustive_limit` configs, else `evolutionary`."""
    strategy = exhaustive if problem.space <= settings.exhaustive_limit else evolutionary
    strategy(problem, settings)
