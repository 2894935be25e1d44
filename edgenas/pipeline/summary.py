"""What a build ends with, as one typed record: the figures a person asks for first, read from the stages' products.

Written into `summary.json` as `to_dict()` (docs/schemas.md, "Build summary"); `BuildSummary.from_dict` reads a
summary written before a field was added, since every later field has a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgenas.records import Record

REPORT = "report.md"


@dataclass(frozen=True)
class Stations(Record):
    """One figure at each station of the network's way: as searched, after pruning, as the artifact."""
    searched: float | None
    pruned: float | None
    artifact: float | None


@dataclass(frozen=True)
class Counts(Record):
    """A count (MACs, parameters) of the searched network and of the one that ships."""
    searched: int
    shipped: int


@dataclass(frozen=True)
class Accuracies(Record):
    """Validation accuracies. `artifact`: the shipped library's own, run here; `int8`: the gate's, measured with
    `int8_judged_by`."""
    artifact: float | None
    searched_fp32: float
    tuned_fp32: float | None
    pruned_fp32: float
    int8: float | None
    int8_drop_points: float | None
    quantize_remedy: str
    int8_judged_by: str | None = None


@dataclass(frozen=True)
class BuildSummary(Record):
    target: str
    budget_ms: float
    margin_pct: float
    backend: str  # the runtime the budget was checked on
    statistic: str  # every latency below is this statistic of the network at its precision, as it ships
    runtime: str  # what ships, on which runtime, and why (`tables.deployment`)
    precision: str
    precision_why: str
    table: str
    predicted_ms: Stations
    measured_ms: Stations
    #: runtime -> the artifact's latency record (`measure.timing`'s: statistics and how it was taken)
    artifact_runs: dict[str, dict]
    #: the checked runtime's readings: two when the first was over the budget (the lower decides)
    artifact_readings_ms: list[float]
    within_budget: bool | None  # None: the target is not measured here
    accuracy: Accuracies
    macs: Counts
    params: Counts
    files_bytes: dict[str, int]  # the artifact's files and their sizes
    network: str  # the searched network's encoding
    pruned: bool
    artifact: str  # its directory
    report: str  # report.md
    # fields added later have defaults, so that a summary written before them reads
    passed_over: list[str] = field(default_factory=list)  # runtimes `--backend auto` could not measure, and why
    searched_with: str | None = None  # the runtime whose table the search trusted
    searched_precision: str | None = None  # the table's precision: what the search and pruning predicted and measured
    #: backend -> precision -> this network's latency, measured side by side (`--precision auto`, `--backend auto`)
    side_by_side_ms: dict[str, dict[str, float]] | None = None
    budget_used: float | None = None  # the artifact's measured share of the budget
    fit: str | None = None  # how the network was chosen to fit (`search.fit`), or pruned to fit
    search_on_noise: str | None = None  # one line when the supernet could not rank its networks
    pruning: str | None = None  # whether pruning was kept, and why (`compress.pays`), or why it did not run
    pruning_side_by_side_ms: dict[str, float] | None = None  # "tuned" and "pruned", measured side by side


def summarize(results: dict, out: Path, target: str) -> BuildSummary:
    """The summary from the stages' products."""
    s, p, q, c, b = (results[k] for k in ("search", "prune", "quantize", "compile", "bench"))
    before, after = p.before, p.after
    searched_as = results["profile"].precision
    return BuildSummary(
        target=target, budget_ms=s.budget_ms, margin_pct=s.margin_pct, backend=b.checked_on, statistic=b.statistic,
        runtime=q.backend, precision=q.precision, precision_why=q.why or results["precision"].why,
        passed_over=list(results["precision"].passed_over), table=results["profile"].table,
        searched_with=results["precision"].backend, searched_precision=searched_as, side_by_side_ms=q.measured_ms,
        predicted_ms=Stations(s.predicted_latency_ms, after.predicted_ms,
                              after.predicted_ms if q.precision == searched_as else None),
        measured_ms=Stations(s.measured_latency_ms, after.measured_ms, b.measured_ms),
        artifact_runs=b.runs,
        artifact_readings_ms=[r[b.statistic] for r in (b.runs.get(b.checked_on), b.recheck, *b.rechecks) if r is not None],
        within_budget=b.within_budget,
        budget_used=None if b.measured_ms is None else round(b.measured_ms / s.budget_ms, 4),
        fit=p.fit or (s.fit.why if s.fit is not None else None), search_on_noise=s.on_noise,
        accuracy=Accuracies(c.accuracy, before.val_accuracy, p.tuned.val_accuracy if p.tuned else None, q.fp32_accuracy,
                            q.int8_accuracy, q.drop_points, q.remedy,
                            q.judged_by or (q.report or {}).get("evaluated_with", {}).get("runtime")),
        macs=Counts(before.macs, after.macs), params=Counts(before.params, after.params), files_bytes=c.files_bytes,
        network=p.network or s.encoding, pruned=p.pruned,
        pruning=p.verdict.why if p.verdict else (p.fit or p.why_not or "pruned"), pruning_side_by_side_ms=p.side_by_side_ms,
        artifact=c.artifact, report=str(Path(out) / REPORT),
    )
