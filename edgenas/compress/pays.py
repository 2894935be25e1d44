"""Whether pruning paid: the pruned network against the one it was pruned from, fine-tuned as long.

NetAdapt reaches any latency it is asked for; whether the trade was worth making is a question about the two networks,
measured together. A build ships the pruned network only when it runs at least `MIN_SPEEDUP` times as fast, measured
side by side with the backend that ships (`measure.shipped.measure_side_by_side`: one machine state for both), and
loses at most `MAX_LOSS_POINTS` of validation accuracy; otherwise it ships the fine-tuned searched network and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.records import Record

#: what pruning must give to be kept: a speed-up the user feels, at an accuracy cost within one run's noise
MIN_SPEEDUP, MAX_LOSS_POINTS = 1.15, 0.3


@dataclass(frozen=True)
class Verdict(Record):
    pays: bool
    before_ms: float  # the network pruning started from (fine-tuned as long)
    after_ms: float  # the pruned network
    before_accuracy: float  # validation, fp32
    after_accuracy: float
    speedup: float  # the unpruned network's latency over the pruned one's
    loss_points: float  # validation accuracy lost by pruning, in points (negative: gained)
    measured: bool  # the speed-up was measured side by side (False: from the table's predictions)
    why: str  # one line, for the summary


def pruning_pays(before_ms: float, after_ms: float, before_acc: float, after_acc: float, measured: bool) -> Verdict:
    speedup, loss = before_ms / after_ms, round((before_acc - after_acc) * 100, 2)
    v = lambda pays, why: Verdict(pays, before_ms, after_ms, before_acc, after_acc, speedup, loss, measured, why)  # noqa: E731
    how = "measured side by side" if measured else "predicted (not measurable here)"
    figures = f"{speedup:.2f}x {how}, {loss:+.2f} points of accuracy lost"
    if speedup < MIN_SPEEDUP:
        return v(False, f"pruning skipped: it did not pay ({figures}; it must give {MIN_SPEEDUP:g}x)")
    if loss > MAX_LOSS_POINTS:
        return v(False, f"pruning skipped: it did not pay ({figures}; at most {MAX_LOSS_POINTS:g} may be lost)")
    return v(True, f"pruned: {figures}")


def fit_goal(predicted_ms: float, measured_ms: float, budget_ms: float) -> float:
    """The predicted latency pruning aims at to bring a network that measured over the budget within it: the table's
    prediction scaled by how far over the budget it measured, so that the table's error on this network is undone."""
    return predicted_ms * budget_ms / measured_ms


#: why a build ships a network that fits unpruned
FITS = "not pruned: the searched network measured within the budget (--prune-ratio below 1 prunes it further, kept when it pays)"


def plan_pruning(searched, budget_ms: float, cfg):
    """What a build prunes, from the search's product (`search.report.SearchReport`) and its `CompressConfig`:
    (to_fit, `PruneConfig` or None). A network that measured over the budget is pruned to fit it; one that fits only
    when `cfg.prune_ratio` asks (below 1), and then only kept when it pays (`pruning_pays`); else nothing is pruned."""
    to_fit = searched.within_budget is False and searched.measured_latency_ms is not None
    if to_fit:
        return True, cfg.prune_config(target_ms=fit_goal(searched.predicted_latency_ms, searched.measured_latency_ms, budget_ms))
    if cfg.prune_ratio < 1:
        return False, cfg.prune_config(ratio=cfg.prune_ratio)
    return False, None
