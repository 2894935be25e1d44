"""The latency of a network whose units were pruned to mid widths the table never measured: each unit's latency as
a curve over its mid channels, through the table's entries at the space's expand ratios (`prune` asks it for every
candidate)."""

from __future__ import annotations

import bisect
from dataclasses import replace

from edgenas.space import SearchSpace
from edgenas.space.space import LayerSpec, make_divisible
from edgenas.tables.latency_model import LatencyModel
from edgenas.measure.timing import STATISTIC
from edgenas.tables.latency_table import LatencyTable

#: a unit's predicted latency never falls below this share of its smallest table entry
FLOOR = 0.05


class ChannelCurve:
    """One unit's latency as a function of its mid channels, from table entries of the same unit at other widths.

    The table holds a block only at the space's expand ratios (for `digits`, 3, 4 and 6 times its input width),
    and a pruned block usually falls between them. Every layer of a block costs about linearly in its mid
    channels, so: linear interpolation between the two neighbouring entries; linear extrapolation from the two
    nearest beyond either end (below the smallest, what does not shrink stays: the projection to the output
    width, the residual, the call), never above the smallest entry and with a floor at `FLOOR` of it, so a
    prediction never reaches zero. With a single entry there is no slope, and the cost is taken as proportional to
    the mid channels, which overstates what pruning saves by the unit's fixed part.

    Pruned widths are multiples of `multiple`, and kernels that take channels that many at a time run a width
    between two multiples on a slower path (ONNX Runtime's int8 kernels on x86 take 16 at a time: an entry at 72
    channels can read slower than 80 channels run). So a width that is not an entry's own is read from the entries
    at multiples of `multiple` when two or more are, and an entry's own width always gives the entry.
    """

    def __init__(self, points: dict[float, float], multiple: int = 1):
        self.points = dict(points)
        aligned = {c: ms for c, ms in points.items() if c % multiple == 0}
        fit = aligned if len(aligned) >= 2 else points
        self.x = sorted(fit)
        self.y = [fit[c] for c in self.x]
        self.floor = FLOOR * min(self.y)

    def __call__(self, channels: float) -> float:
        if channels in self.points:
            return self.points[channels]
        x, y = self.x, self.y
        if len(x) == 1:
            ms = y[0] * channels / x[0]
        else:
            i = min(max(bisect.bisect_left(x, channels), 1), len(x) - 1)
            slope = (y[i] - y[i - 1]) / (x[i] - x[i - 1])
            if channels < x[0]:  # fewer channels never cost more, even where noise made two entries fall with width
                slope = max(slope, 0.0)
            ms = y[i - 1] + slope * (channels - x[i - 1])
        # the floor bounds an extrapolation below the smallest entry only: a measured entry is what it is
        return ms if channels >= x[0] else max(self.floor, ms)


def unit_points(table: LatencyTable, space: SearchSpace, spec: LayerSpec) -> dict[float, float]:
    """The table's entries for `spec` at other mid widths: {mid channels: ms}, its own entry included.

    An MBConv block has one entry per expand ratio. The head's expansion has one width in the space, so its
    entries at the last stage's other input widths stand in, each at the mid width with the same expansion
    MACs (mid * their input width / this one).
    """
    table.entry_ms(spec)
    if spec.kind == "mbconv":
        variants = {make_divisible(spec.cin * e): replace(spec, expand=e) for e in space.expand_ratios}
    else:
        variants = {spec.mid * c / spec.cin: replace(spec, cin=c) for c in space.stages[-1].widths}
    return {c: table.entries[v.key][STATISTIC] for c, v in variants.items() if v.key in table.entries}


class PrunedLatency:
    """The table's `LatencyModel` asked about a network with pruned mid channels: the stem from the table, every other
    unit through its `ChannelCurve`. Unpruned, it is the search's prediction to the last bit."""

    def __init__(self, table: LatencyTable, space: SearchSpace, specs: list[LayerSpec], multiple: int = 1):
        self.model = LatencyModel(table, space)
        self.stem_ms = [table.entry_ms(s) for s in specs if s.kind == "stem"]
        self.curves = {i: ChannelCurve(unit_points(table, space, s), multiple) for i, s in enumerate(specs) if s.kind != "stem"}
        # A correction with a negative per-unit term takes off the overhead every standalone block paid (an int8 block's
        # own input quantization, say). A unit extrapolated below its smallest entry must keep more than that overhead,
        # or a heavily pruned network would be predicted to take no time, or less.
        scale, per_unit = self.model.scale, self.model.per_unit
        overhead = max(0.0, -per_unit / scale) if scale > 0 else 0.0
        for curve in self.curves.values():
            curve.floor = max(curve.floor, overhead * (1 + FLOOR))

    def __call__(self, channels: dict[int, int]) -> float:
        """`channels`: mid channels per unit (layer index), as `mid_channels` gives them."""
        return self.model.of_units([*self.stem_ms, *(self.curves[i](c) for i, c in sorted(channels.items()))])


def fastest_channels(latency: PrunedLatency, channels: dict[int, int], multiple: int) -> dict[int, int]:
    """Per unit, the channel count (its own, or a multiple of `multiple` below it) predicted fastest. Units add up
    independently, and a unit's curve need not fall all the way down: on a table of tiny blocks, where the call
    overhead dominates, an entry at 24 channels can read faster than 16 interpolated."""
    return {i: min([c, *range(c - (c % multiple or multiple), min(multiple, c) - 1, -multiple)],
                   key=lambda k, i=i: latency({**channels, i: k})) for i, c in channels.items()}
