"""The most accurate network that *measures* within the budget, found on the search's Pareto front.

A table predicts a whole network within some percent, and the user's budget is a measured figure: a search that aims
a guard band below the budget ships a network that uses the budget only partly, and one that aims at the budget ships
one over it about half the time. So the evolution searches up to the budget plus the table's 95th-percentile overrun,
and the front it found is measured: a binary search for the slowest (so most accurate) network on it that measures
within the budget, a few compiles in all. The one chosen is read twice, and fits only if its higher reading plus the
spread between the two is within the budget less `HEADROOM`: the noise measured on it, and what the artifact may read
above the search's readings of the same network minutes later (other load on a shared machine comes and goes, and the
artifact carries the fine-tuned weights and their calibration); docs/results/main-command-2026-12-07.md has the runs
that set it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from edgenas.records import Record

#: readings the binary search takes at most (the front is sorted by predicted latency, so it needs about log2 of the
#: length of its part near the budget); the chosen network's second reading, and any step down, come on top
MAX_MEASURED = 6
#: the share of the budget the fit leaves for the artifact reading above the search's readings of its network
HEADROOM = 0.03


@dataclass(frozen=True)
class FitTry(Record):
    encoding: str
    predicted_ms: float
    predicted_accuracy: float
    readings_ms: tuple[float, ...]  # one, or two for the one chosen


@dataclass(frozen=True)
class Fit(Record):
    """How the shipped network was chosen on the front: `index` into `front`, the networks measured, and why."""

    index: int
    fits: bool  # it measured within the budget; else it is the fastest network measured, and over
    why: str
    tried: list[FitTry] = field(default_factory=list)


def held_reading(readings: Sequence[float]) -> float:
    """What the budget is held against: the higher of two readings plus the spread between them (the noise measured
    on the network); one reading as it is."""
    return 2 * max(readings) - min(readings) if len(readings) >= 2 else max(readings)


def said(readings: Sequence[float]) -> str:
    """A network's readings as the fit holds them, in a phrase: "read 0.1397 and 0.1699 ms (held at 0.2001 ms: ...)"."""
    text = f"read {' and '.join(f'{v:.4f}' for v in readings)} ms"
    if len(readings) >= 2:
        text += f" (held at {held_reading(readings):.4f} ms: the higher reading plus the spread between them)"
    return text


def fit_to_budget(front: Sequence, budget_ms: float, measure: Callable[[object], float],
                  max_measured: int = MAX_MEASURED, headroom: float = HEADROOM) -> Fit:
    """`front`: the candidates of the search's Pareto front (`.arch`, `.latency_ms`, `.accuracy`), fastest first, each
    predicted within the window the evolution searched. `measure(arch) -> ms`, one reading. A network fits when it
    reads within `budget_ms` less `headroom` of it."""
    limit = budget_ms * (1 - headroom)
    readings: dict[int, list[float]] = {}

    def read(i: int) -> float:
        readings.setdefault(i, []).append(measure(front[i].arch))
        return readings[i][-1]

    def tries() -> list[FitTry]:
        return [FitTry(front[i].arch.encoding, round(front[i].latency_ms, 6), round(front[i].accuracy, 6),
                       tuple(round(v, 6) for v in r)) for i, r in sorted(readings.items())]

    def taken() -> int:
        return sum(len(r) for r in readings.values())

    # lo: the slowest index known to fit (-1: none yet); hi: the fastest known to be over (len: none yet)
    lo, hi = -1, len(front)
    while hi - lo > 1 and taken() < max_measured:
        mid = (lo + hi) // 2
        if read(mid) <= limit:
            lo = mid
        else:
            hi = mid
    def steady(i: int) -> bool:
        """Read twice, and within the budget by the spread between its readings: the noise measured on it."""
        r = readings[i]
        return len(r) >= 2 and held_reading(r) <= limit

    # the one chosen is read again, and fits only when steady; else the next faster one measured within is taken (each
    # step goes down the networks already measured, so this ends)
    while lo >= 0 and not steady(lo):
        if len(readings[lo]) < 2:
            read(lo)
        else:
            lo = max((i for i in readings if i < lo and max(readings[i]) <= limit), default=-1)
    if lo < 0:
        over = min(readings, default=0)
        return Fit(over, False, f"the fastest network measured on the search's front {said(readings.get(over, [0.0]))}, over "
                                f"the {budget_ms:g} ms budget less its {headroom:.0%} headroom", tries())
    above = min((i for i in readings if i > lo), default=None)
    nxt = (f"; the next one up the front measured {min(readings[above]):.4f} ms" if above is not None else
           "; it is the most accurate network the search found" if lo == len(front) - 1 else "")
    used = max(readings[lo]) / budget_ms
    return Fit(lo, True, f"the most accurate network on the search's front that measured within the budget less its "
                         f"{headroom:.0%} headroom: {max(readings[lo]):.4f} ms, {used:.0%} of {budget_ms:g} ms "
                         f"({len(readings)} measured){nxt}",
               tries())
