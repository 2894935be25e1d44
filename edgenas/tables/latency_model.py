"""The table's corrected latency of a network: the sum of its units' entries, then the table's correction.

Search, build, prune, validate and tests all ask this one object, so a budget met in search is met in prune.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgenas.space import Arch, SearchSpace
from edgenas.tables.correction import apply_correction, coefficients
from edgenas.tables.latency_table import LatencyTable


class LatencyModel:
    """Lookups keyed by plain tuples: building `LayerSpec` keys per candidate costs more than the search itself,
    so the table is re-indexed once by (resolution, stage, first-of-stage, cin, cout, kernel, expand)."""

    def __init__(self, table: LatencyTable, space: SearchSpace):
        self.table, self.space = table, space
        self.intercept, self.scale, self.per_unit = coefficients(table.correction)
        self._stem: dict[int, float] = {}
        self._head: dict[tuple[int, int], float] = {}
        self._block: dict[tuple, float] = {}
        for res, place, spec in space.slots():
            if place[0] == "stem":
                self._stem[res] = table.entry_ms(spec)
            elif place[0] == "head":
                self._head[(res, place[1])] = table.entry_ms(spec)
            else:
                self._block[(res, *place[1:])] = table.entry_ms(spec)

    def raw_ms(self, arch: Arch) -> float:
        """Sum of the measured latencies of the network's stem, blocks and head, in that order."""
        res, block = arch.resolution, self._block
        total, cin = self._stem[res], self.space.stem_width
        for s, (width, blocks) in enumerate(zip(arch.widths, arch.blocks)):
            for i, (k, e) in enumerate(blocks):
                total += block[(res, s, i == 0, cin, width, k, e)]
                cin = width
        return total + self._head[(res, cin)]

    def __call__(self, arch: Arch) -> float:
        return apply_correction(self.table.correction, self.raw_ms(arch), 2 + sum(len(b) for b in arch.blocks))

    def of_units(self, units_ms: Iterable[float]) -> float:
        """A network given by its units' latencies in order, stem first: one the space cannot name (a pruned one).
        Summed in the order `raw_ms` sums, so an unpruned network gets exactly its `__call__` figure."""
        total, n = 0.0, 0
        for ms in units_ms:
            total, n = total + ms, n + 1
        return apply_correction(self.table.correction, total, n)

    def fastest(self) -> tuple[float, Arch]:
        """The exact fastest network of the space, by dynamic programming over stages.

        Blocks are independent given their input and output widths, so per resolution the state is
        the previous stage's width; each unit's cost is its corrected share `scale * ms + per_unit`.
        """
        space, best = self.space, None
        for res in space.resolutions:
            # state: width entering the stage -> (cost so far, widths, blocks)
            states = {space.stem_width: (self.scale * self._stem[res] + self.per_unit, (), ())}
            for s, stage in enumerate(space.stages):
                nxt = {}
                for cin, (cost, widths, blocks) in states.items():
                    for w in stage.widths:
                        first = min(((self.scale * self._block[(res, s, True, cin, w, k, e)], (k, e))
                                     for k in space.kernel_sizes for e in space.expand_ratios))
                        rest = min(((self.scale * self._block[(res, s, False, w, w, k, e)], (k, e))
                                    for k in space.kernel_sizes for e in space.expand_ratios))
                        for d in stage.depths:
                            c = cost + first[0] + (d - 1) * rest[0] + d * self.per_unit
                            if w not in nxt or c < nxt[w][0]:
                                nxt[w] = (c, widths + (w,), blocks + ((first[1],) + (rest[1],) * (d - 1),))
                states = nxt
            for cin, (cost, widths, blocks) in states.items():
                total = self.intercept + cost + self.scale * self._head[(res, cin)] + self.per_unit
                if best is None or total < best[0]:
                    best = (total, Arch(res, widths, blocks))
        # the same float sum as __call__, so a budget of exactly this figure admits the network
        return self(best[1]), best[1]
