"""What a build prunes, and whether pruning paid.

A budgeted build wants the most accurate network that measures within the budget, not a faster one. Pruning has two
jobs there: to fit a searched network that measured over the budget (`must_fit`, `fit_goal`), and, asked for with
`--prune-ratio` below 1, to find a more accurate one from above: a network searched at budget / ratio, pruned down to
the budget (NetAdapt), against the one searched at the budget, both fine-tuned alike and measured side by side with
the backend that ships (`measure.shipped.measure_side_by_side`: one machine state for both). It ships only when it
fits and is more accurate (`pruned_from_above_pays`); otherwise the build says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.records import Record


@dataclass(frozen=True)
class Verdict(Record):
    pays: bool
    before_ms: float  # the network pruning is set against: searched at the budget, fine-tuned alike
    after_ms: float  # the pruned network
    before_accuracy: float  # validation, fp32
    after_accuracy: float
    speedup: float  # the unpruned network's latency over the pruned one's
    loss_points: float  # validation accuracy lost by pruning, in points (negative: gained)
    measured: bool  # the latencies were measured side by side (False: the table's predictions)
    why: str  # one line, for the summary


def fit_goal(searched, budget_ms: float) -> float:
    """The predicted latency pruning aims at to bring a searched network (`search.report.SearchReport`) within the
    budget as the fit holds it (less its `HEADROOM`): the table's prediction scaled by how far over that the network
    measured (`held_reading`: its noise counts), so that the table's error on this network is undone. Not measured:
    what the search aimed at."""
    from edgenas.search.fit import HEADROOM, held_reading

    readings = searched.measured_readings_ms or ([searched.measured_latency_ms] if searched.measured_latency_ms else [])
    if not readings:
        return searched.search_budget_ms
    return searched.predicted_latency_ms * budget_ms * (1 - HEADROOM) / held_reading(readings)


#: why a build ships a network that fits unpruned
FITS = ("not pruned: the searched network measured within the budget (--prune-ratio below 1 also searches above the "
        "budget and prunes down to it, kept when it is more accurate)")


def must_fit(searched) -> bool:
    """The search's front had no network that measured within the budget (`search.fit`): its pick is pruned to fit."""
    return searched.within_budget is False and searched.measured_latency_ms is not None


def pruned_from_above_pays(budget_ms: float, at_ms: float, above_ms: float, at_acc: float, above_acc: float,
                           measured: bool) -> Verdict:
    """A network searched above the budget and pruned down to it ships instead of the one searched at the budget only
    when it fits and is more accurate, both fine-tuned alike: pruning is worth its cost only where it buys accuracy at
    the latency the user asked for."""
    speedup, loss = at_ms / above_ms, round((at_acc - above_acc) * 100, 2) + 0.0  # + 0.0: no "-0.00"
    v = lambda pays, why: Verdict(pays, at_ms, above_ms, at_acc, above_acc, speedup, loss, measured, why)  # noqa: E731
    how = "measured side by side" if measured else "predicted (not measurable here)"
    if above_ms > budget_ms:
        return v(False, f"pruning from above skipped: the pruned network read {above_ms:.4f} ms ({how}), over the "
                        f"{budget_ms:g} ms budget")
    figures = (f"{0.0 - loss:+.2f} points against the network searched at the budget, fine-tuned alike ({above_ms:.4f} ms "
               f"against {at_ms:.4f} ms, {how})")
    if loss >= 0:
        return v(False, f"pruning from above skipped: {figures}")
    return v(True, f"searched above the budget and pruned to it: {figures}")
