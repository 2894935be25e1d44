"""What a search hands on (importable without torch: the build records and reads it back)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgenas.records import Record
from edgenas.search.fit import Fit


@dataclass(frozen=True)
class SearchReport(Record):
    budget_ms: float
    search_budget_ms: float  # the budget the evolution worked to: plus the guard band when measured, else less it
    margin_pct: float
    predicted_latency_ms: float
    measured_latency_ms: float | None
    within_budget: bool | None  # both readings of the chosen network within the budget; None: not measured
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
    precision: str = "fp32"  # the table's: what the predicted and measured latencies are of (results before it: fp32)
    # the winner's measurements: two when the first read over the budget (`measured_latency_ms` is the lower)
    measured_readings_ms: list = field(default_factory=list)
    #: how the network was chosen on the front by measurement (`search.fit`); None when nothing was measured
    fit: Fit | None = None
    #: one line when the supernet could not rank its networks (`Searcher.on_noise`); None when it could
    on_noise: str | None = None
