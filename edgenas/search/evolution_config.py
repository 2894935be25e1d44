"""Evolution settings; Once-for-All's defaults (population 100, parents 25%, mutation 50%).

700 generations rather than OFA's 500: each generation scores 75 new children, so the default search
scores 100 + 700 x 75 = 52,600 candidates, as many as OFA's 500 x 100 counts with its parents.
"""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    generations: int = 700
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
