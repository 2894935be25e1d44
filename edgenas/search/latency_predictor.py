"""End-to-end latency of an architecture from a latency table, fast enough for 10^5 lookups a second."""

from __future__ import annotations

from edgenas.errors import EdgenasError
from edgenas.space import Arch, SearchSpace
from edgenas.space.space import LayerSpec
from edgenas.tables.latency_table import STATISTIC, LatencyTable


class TableLatencyPredictor:
    """Sum of the table's blocks with its validated correction; lookups keyed by plain tuples.

    Building `LayerSpec` keys per candidate costs more than the search itself, so the table is
    re-indexed once by (resolution, stage, first-of-stage, cin, cout, kernel, expand).
    """

    def __init__(self, table: LatencyTable, space: SearchSpace):
        self.table, self.space = table, space
        coef = (table.correction or {}).get("coef")
        self.scale, self.per_unit, self.intercept = (coef[1], coef[2], coef[0]) if coef else (1.0, 0.0, 0.0)
        self._stem: dict[int, float] = {}
        self._head: dict[tuple[int, int], float] = {}
        self._block: dict[tuple, float] = {}
        self._index()

    def _ms(self, spec: LayerSpec) -> float:
        entry = self.table.entries.get(spec.key)
        if entry is None:
            raise EdgenasError(f"{self.table.path}: no entry for {spec.key}; complete it with `edgenas profile --resume`")
        return entry[STATISTIC]

    def _index(self) -> None:
        for res, place, spec in self.space.slots():
            if place[0] == "stem":
                self._stem[res] = self._ms(spec)
            elif place[0] == "head":
                self._head[(res, place[1])] = self._ms(spec)
            else:
                self._block[(res, *place[1:])] = self._ms(spec)

    def raw_ms(self, arch: Arch) -> float:
        res, block = arch.resolution, self._block
        total, cin = self._stem[res], self.space.stem_width
        for s, (width, blocks) in enumerate(zip(arch.widths, arch.blocks)):
            for i, (k, e) in enumerate(blocks):
                total += block[(res, s, i == 0, cin, width, k, e)]
                cin = width
        return total + self._head[(res, cin)]

    def __call__(self, arch: Arch) -> float:
        units = 2 + sum(len(b) for b in arch.blocks)
        return self.intercept + self.scale * self.raw_ms(arch) + self.per_unit * units

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
