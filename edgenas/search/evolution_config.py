"""Evolution settings; Once-for-All's defaults (population 100, parents 25%, mutation 50%)."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    generations: int = 500
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
