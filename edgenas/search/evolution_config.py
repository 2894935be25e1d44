"""Evolution settings; Once-for-All's defaults (population 100, parents 25%, mutation 50%).

700 generations rather than OFA's 500: each generation scores 75 new children, so the default search
scores 100 + 700 x 75 = 52,600 candidates, as many as OFA's 500 x 100 counts with its parents.
"""

from dataclasses import asdict, dataclass

#: how a search picks its network: the evolution, or a baseline it must beat (`EvolutionFinder.search`)
STRATEGIES = ("evolution", "random", "uniform")


@dataclass(frozen=True)
class EvolutionConfig:
    #: evolution; random: as many random networks as the evolution scores, the best predicted; uniform: the largest
    #: network with the same kernel, expansion and depth in every stage that fits (what one would pick by hand)
    strategy: str = "evolution"
    population: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    generations: int = 700
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            from edgenas.errors import BadInput

            raise BadInput(f"--strategy {self.strategy}: one of {', '.join(STRATEGIES)}")

    @property
    def candidates(self) -> int:
        """How many candidates the evolution scores: its first population, then each generation's children."""
        parents = max(1, int(round(self.population * self.parent_ratio)))
        return self.population + self.generations * (self.population - parents)

    def to_dict(self) -> dict:
        return asdict(self)
