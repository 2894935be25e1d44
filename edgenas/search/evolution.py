"""Latency-constrained evolutionary search, after Once-for-All's `EvolutionFinder`.

Like OFA's, it takes the latency and accuracy predictors as plain objects. Unlike OFA's, it never
spins: an impossible budget fails at once with the fastest latency the space reaches, and a random
network over budget is shrunk step by step toward that fastest network instead of being re-drawn
until one happens to fit.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from edgenas.errors import BadInput
from edgenas.search.evolution_config import EvolutionConfig
from edgenas.space import Arch, SearchSpace


@dataclass
class Candidate:
    arch: Arch
    latency_ms: float
    accuracy: float


@dataclass
class SearchResult:
    best: Candidate
    budget_ms: float
    evaluated: int  # candidates scored, repeats included
    unique: int  # distinct networks the accuracy predictor scored
    seconds: float
    history: list = field(default_factory=list)  # best accuracy per generation
    pareto: list = field(default_factory=list)  # non-dominated candidates seen, fastest first


class NoNetworkFits(BadInput):
    def __init__(self, budget_ms: float, fastest_ms: float, fastest: Arch):
        super().__init__(f"no network in the space fits --budget-ms {budget_ms:g}: the fastest reachable latency is "
                         f"{fastest_ms:.4f} ms ({fastest.encoding})")
        self.fastest_ms = fastest_ms


def check_budget(budget_ms: float, fastest_ms: float, fastest: Arch) -> None:
    if not budget_ms > 0:
        raise BadInput(f"--budget-ms must be a positive number of milliseconds, not {budget_ms}")
    if fastest_ms > budget_ms:
        raise NoNetworkFits(budget_ms, fastest_ms, fastest)


class EvolutionFinder:
    """`latency(arch) -> ms`; `accuracy(list[Arch]) -> list[float]` scores a whole generation at once."""

    def __init__(self, space: SearchSpace, latency: Callable[[Arch], float],
                 accuracy: Callable[[Sequence[Arch]], Sequence[float]], fastest: tuple[float, Arch],
                 config: EvolutionConfig = EvolutionConfig()):
        self.space, self.latency, self.accuracy, self.cfg = space, latency, accuracy, config
        self.fastest_ms, self.fastest_arch = fastest
        self.rng = random.Random(config.seed)

    # ---- genetic operators ---------------------------------------------------------------------
    def _random(self) -> Arch:
        return self.space.sample(self.rng)

    def mutate(self, arch: Arch) -> Arch:
        sp, rng, p = self.space, self.rng, self.cfg.mutate_prob
        res = rng.choice(sp.resolutions) if rng.random() < p else arch.resolution
        widths, blocks = [], []
        for stage, w, bl in zip(sp.stages, arch.widths, arch.blocks):
            widths.append(rng.choice(stage.widths) if rng.random() < p else w)
            depth = rng.choice(stage.depths) if rng.random() < p else len(bl)
            new = [(rng.choice(sp.kernel_sizes) if rng.random() < p else k, rng.choice(sp.expand_ratios) if rng.random() < p else e)
                   for k, e in bl[:depth]]
            new += [(rng.choice(sp.kernel_sizes), rng.choice(sp.expand_ratios)) for _ in range(depth - len(new))]
            blocks.append(tuple(new))
        return Arch(res, tuple(widths), tuple(blocks))

    def crossover(self, a: Arch, b: Arch) -> Arch:
        rng = self.rng
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return Arch(pick(a.resolution, b.resolution), tuple(pick(x, y) for x, y in zip(a.widths, b.widths)),
                    tuple(pick(x, y) for x, y in zip(a.blocks, b.blocks)))

    def shrink_to_fit(self, arch: Arch, budget: float) -> Arch | None:
        """Move `arch` one choice at a time toward the fastest network until it fits; the fastest fits, so this ends."""
        target = self.fastest_arch
        for _ in range(64):
            if self.latency(arch) <= budget:
                return arch
            choices = []
            if arch.resolution != target.resolution:
                choices.append(("res", None))
            for s in range(len(arch.widths)):
                if arch.widths[s] != target.widths[s] or arch.blocks[s] != target.blocks[s]:
                    choices.append(("stage", s))
            if not choices:
                break
            kind, s = self.rng.choice(choices)
            if kind == "res":
                arch = Arch(target.resolution, arch.widths, arch.blocks)
            else:
                widths = arch.widths[:s] + (target.widths[s],) + arch.widths[s + 1:]
                blocks = arch.blocks[:s] + (target.blocks[s],) + arch.blocks[s + 1:]
                arch = Arch(arch.resolution, widths, blocks)
        return arch if self.latency(arch) <= budget else None

    # ---- search --------------------------------------------------------------------------------
    def _scorer(self, budget_ms: float):
        """`score(archs)` and `random()` for one search; each distinct network is predicted once."""
        seen: dict[Arch, Candidate] = {}

        def score(archs: list[Arch]) -> list[Candidate]:
            fresh = [a for a in dict.fromkeys(archs) if a not in seen]
            if fresh:
                for a, acc in zip(fresh, self.accuracy(fresh)):
                    seen[a] = Candidate(a, self.latency(a), float(acc))
            return [seen[a] for a in archs]

        return seen, score, lambda arch: self.shrink_to_fit(arch, budget_ms) or self.fastest_arch

    def run(self, budget_ms: float) -> SearchResult:
        check_budget(budget_ms, self.fastest_ms, self.fastest_arch)
        start, cfg = time.perf_counter(), self.cfg
        n_parents = max(1, int(round(cfg.population * cfg.parent_ratio)))
        n_mutate = int(round(cfg.population * cfg.mutation_ratio))
        seen, score, feasible = self._scorer(budget_ms)
        population = score([feasible(self._random()) for _ in range(cfg.population)])
        history = []
        evaluated = len(population)
        for _ in range(cfg.generations):
            parents = sorted(population, key=lambda c: -c.accuracy)[:n_parents]
            children = []
            for _ in range(n_mutate):
                children.append(feasible(self.mutate(self.rng.choice(parents).arch)))
            for _ in range(cfg.population - n_parents - n_mutate):
                a, b = self.rng.choice(parents), self.rng.choice(parents)
                children.append(feasible(self.crossover(a.arch, b.arch)))
            evaluated += len(children)
            population = parents + score(children)
            history.append(max(c.accuracy for c in population))
        best = max(population, key=lambda c: (c.accuracy, -c.latency_ms))
        return SearchResult(best, budget_ms, evaluated, len(seen), time.perf_counter() - start, history,
                            pareto_front(seen.values()))

    def search(self, budget_ms: float) -> SearchResult:
        """The network the configured strategy picks: the evolution's, or a baseline's (`EvolutionConfig.strategy`)."""
        if self.cfg.strategy == "random":
            return self.random_search(budget_ms, self.cfg.candidates)
        if self.cfg.strategy == "uniform":
            return self.largest_uniform(budget_ms)
        return self.run(budget_ms)

    def largest_uniform(self, budget_ms: float) -> SearchResult:
        """The baseline a user picks by hand: of the networks with one kernel, one expansion, one depth and one width
        choice throughout, the slowest (so the largest) predicted to fit."""
        check_budget(budget_ms, self.fastest_ms, self.fastest_arch)
        start = time.perf_counter()
        seen, score, _ = self._scorer(budget_ms)
        fitting = [a for a in uniform_archs(self.space) if self.latency(a) <= budget_ms]
        if not fitting:
            raise BadInput(f"no uniform network of space '{self.space.name}' fits {budget_ms:.4f} ms (the fastest network "
                           f"of the space, {self.fastest_ms:.4f} ms, is not uniform)")
        cands = score(fitting)
        best = max(cands, key=lambda c: (c.latency_ms, c.accuracy))
        return SearchResult(best, budget_ms, len(cands), len(seen), time.perf_counter() - start, [], pareto_front(seen.values()))

    def random_search(self, budget_ms: float, candidates: int) -> SearchResult:
        """The baseline evolution must beat: as many random networks, made to fit the same way, scored in batches."""
        check_budget(budget_ms, self.fastest_ms, self.fastest_arch)
        start = time.perf_counter()
        seen, score, feasible = self._scorer(budget_ms)
        best = None
        for i in range(0, candidates, self.cfg.population):
            batch = score([feasible(self._random()) for _ in range(min(self.cfg.population, candidates - i))])
            best = max(batch + ([best] if best else []), key=lambda c: (c.accuracy, -c.latency_ms))
        return SearchResult(best, budget_ms, candidates, len(seen), time.perf_counter() - start, [], pareto_front(seen.values()))


def uniform_archs(space: SearchSpace) -> list[Arch]:
    """Every network with the same kernel, expansion and depth in all stages (a depth a stage lacks is taken at its
    nearest), the same width choice (the i-th of each stage's widths), at every resolution."""
    def nearest(options, want):
        return min(options, key=lambda o: (abs(o - want), o))

    depths = sorted({d for s in space.stages for d in s.depths})
    n_widths = max(len(s.widths) for s in space.stages)
    return list(dict.fromkeys(
        Arch(r, tuple(s.widths[min(w, len(s.widths) - 1)] for s in space.stages),
             tuple(((k, e),) * nearest(s.depths, d) for s in space.stages))
        for r in space.resolutions for k in space.kernel_sizes for e in space.expand_ratios for d in depths
        for w in range(n_widths)))


def pareto_front(candidates) -> list[Candidate]:
    """Candidates no other one beats on both latency and accuracy, fastest first."""
    front, best_acc = [], -1.0
    for c in sorted(candidates, key=lambda c: (c.latency_ms, -c.accuracy)):
        if c.accuracy > best_acc:
            front.append(c)
            best_acc = c.accuracy
    return front
