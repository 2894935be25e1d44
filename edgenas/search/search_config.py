"""What a search is asked for besides its budget, kept apart from the search code so the CLI can check it without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgenas.errors import BadInput
from edgenas.search.evolution_config import EvolutionConfig


@dataclass(frozen=True)
class SearchConfig:
    subnets: int = 200  # sub-networks evaluated with the supernet's weights to train the accuracy predictor
    #: the table's error band, in percent: the search looks up to the budget plus it and fits by measurement (with
    #: nothing measured, it searches to the budget less it); None: the table's own 95th-percentile overrun
    margin_pct: float | None = None
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)

    def __post_init__(self):
        if self.subnets < 1:
            raise BadInput(f"--subnets {self.subnets}: must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)
