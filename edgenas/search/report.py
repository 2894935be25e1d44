"""What a search hands on (importable without torch: the build records and reads it back)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgenas.jsonio import dataclass_fields


@dataclass(frozen=True)
class SearchReport:
    budget_ms: float
    search_budget_ms: float  # the budget less the guard band
    margin_pct: float
    predicted_latency_ms: float
    measured_latency_ms: float | None
    within_budget: bool | None
    val_accuracy: float
    predicted_accuracy: float
    params: int
    evaluated: int  # candidates scored (a repeat is looked up, not predicted again)
    unique: int  # distinct networks the accuracy predictor scored
    search_seconds: float  # the evolution alone
    seconds: float  # everything, sub-network evaluation and measurement included
    arch: dict
    encoding: str
    fastest_ms: float
    predictor: dict
    table: str
    supernet: str
    out_dir: str
    precision: str  # the table's: what the predicted and measured latencies are of
    # the winner's measurements: two when the first read over the budget (`measured_latency_ms` is the lower)
    measured_readings_ms: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "best.json") -> "SearchReport":
        return cls(**dataclass_fields(cls, d, where, "the search result"))
