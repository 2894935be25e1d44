"""A table for a new device adapted from the tables of devices already measured, from a few of its blocks.

A full profile measures every unit of the space (466 for the digits space: minutes, most of it TVM compiling). The
other devices' tables already say how the units compare with each other; what a new device changes is mostly how
each kind of unit scales. So `adapt` measures a few units chosen to span the space (k-center over what the source
tables and the unit's shape say about it), fits, in log space, a ridge regression from the source tables' latencies
and the unit's shape to this device's, and fills in the rest. The measured units keep their measurements; every
other entry records that it was adapted, and from which tables. `profile --full` measures the adapted entries.

A space fitted to the data (`space.fit`) has no table anywhere, but most of its units are units of its template: the
same kind, channels, kernel and size, keyed alike. Tables of other spaces serve it unit by unit: this device's own
tables of the same kind lend their measurements outright (`borrowed_entries`), and other devices' tables are sources
for the units they hold (`Source.covers`); the units no source holds are measured.

How well that predicts whole networks is for `validate` to say, on networks where a search looks; a build that finds
an adapted table predicting worse than a measured one would measures the rest (`tables.ready`).

Written here rather than taken from a library: HELP and LitePred, the published methods, ship research code tied
to their own operator sets and devices, and the model here is a dozen lines of least squares.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgenas.errors import BadInput, warn
from edgenas.space import SearchSpace
from edgenas.space.space import LayerSpec
from edgenas.tables.key import TableKey
from edgenas.measure.timing import STATISTIC
from edgenas.tables.latency_table import LatencyTable

#: Units measured on the new device: a tenth of the space, at most this many (enough to fit the two dozen
#: coefficients below with room to spare) and at least `MIN_PROBE`
PROBE_BLOCKS = 48
MIN_PROBE = 12
#: Source tables used at most: the ones whose latencies agree best with the probe (more add noise, not knowledge).
MAX_SOURCES = 3
#: Ridge penalty on the standardized features: small, so that a source that describes the device well is followed.
RIDGE = 0.3
#: The field an adapted entry carries: where its number came from.
ADAPTED = "adapted_from"
#: The table's meta field that says it was adapted (`AdaptReport`)
ADAPTED_META = "adapted"
#: The field of an entry this device measured for another space's table (the unit is the same): which table
BORROWED = "borrowed_from"
#: A table of another space is a source when it holds at least this share of the space's units
MIN_COVERED = 0.5


@dataclass(frozen=True)
class Source:
    """A complete table of another device (or another precision or layout of this one) for the same space, or for
    another space that holds most of this one's units."""

    label: str  # its path under the tables directory, which says device, backend, precision and layout
    table: LatencyTable

    def covers(self, layer: LayerSpec) -> bool:
        return layer.key in self.table.entries

    def log_ms(self, layer: LayerSpec) -> float:
        return math.log(self.table.entries[layer.key][STATISTIC])


def covered(space: SearchSpace, sources: list[Source]) -> list[LayerSpec]:
    """The space's units every source holds: the ones adaptation predicts (the others are measured)."""
    return [layer for layer in space.all_layers() if all(s.covers(layer) for s in sources)]


@dataclass(frozen=True)
class AdaptReport:
    """What `adapt` did, kept in the table's `meta.adapted`."""

    sources: list[str]
    probe_blocks: int
    #: leave-one-out over the probe units: the share whose adapted latency is within ±10% of their measurement
    loo_within_10pct: float
    adapted_entries: int

    def to_dict(self) -> dict:
        return asdict(self)


def _tables(key: TableKey, tables_dir: Path, quiet: bool = False):
    """(label, table) for every table under `tables_dir` of `key`'s backend, but not the one `key` names; a damaged
    one is passed over, named in a warning line unless `quiet`: they are somebody else's tables, not this command's
    input."""
    here = key.path(tables_dir).resolve()
    for path in sorted(Path(tables_dir).glob("*/*/**/*.json")):
        if path.resolve() == here or not is_table_file(path, key.backend):
            continue
        try:
            yield str(path.relative_to(tables_dir)), LatencyTable.load(path)
        except BadInput as e:
            if not quiet:
                warn(f"not adapting from it: {e}")


def find_sources(key: TableKey, tables_dir: Path) -> list[Source]:
    """Every table under `tables_dir` of the same backend and thread count that holds the space's units, measured:
    other devices, and this device's other precisions and layouts; for the same space, complete; for another space
    (a fitted space's template), holding at least `MIN_COVERED` of its units. Tables adapted themselves are passed
    over: second-hand numbers."""
    found, layers = [], key.space.all_layers()
    for label, table in _tables(key, tables_dir):
        ident = table.identity
        if ident.get("threads") != key.threads or adapted_keys(table):
            continue
        share = sum(layer.key in table.entries for layer in layers) / len(layers)
        if share == 1.0 if ident.get("space_hash") == key.space.hash else share >= MIN_COVERED:
            found.append(Source(label, table))
    return found


def borrowed_entries(key: TableKey, tables_dir: Path) -> dict[str, dict]:
    """This device's measurements of the space's units in its tables of other spaces of the same kind (filed in this
    device's directory, and saying so: target, backend, precision, layout, threads, measured where this one is, with the
    kernels compile uses now): the same unit, measured the same way, is the same entry. Each carries `BORROWED`, the
    table it came from; an adapted entry stays adapted."""
    want = {k: v for k, v in key.identity().items() if k not in ("space", "space_hash")}
    schedules, found = key.schedules(), {}
    keys = {layer.key for layer in key.space.all_layers()}
    mine = str((key.target_dir(tables_dir) / key.device).relative_to(tables_dir))
    for label, table in _tables(key, tables_dir, quiet=True):  # `find_sources` names a damaged one, if it comes to that
        ident = {k: v for k, v in table.identity.items() if k not in ("space", "space_hash")}
        if (not label.startswith(mine + "/") or table.identity.get("space_hash") == key.space.hash or ident != want
                or table.meta.get("schedules") != schedules):
            continue
        for k in keys & set(table.entries) - set(found):
            found[k] = {**table.entries[k], BORROWED: label}
    return found


def is_table_file(path: Path, backend: str) -> bool:
    """A table's file by its name (`tvm-int8-nhwc.json`), not what sits next to it: its `.samples.json` and
    `.validation.json`, the precision probe (`precision-tvm-nhwc.json`)."""
    return path.name.startswith(f"{backend}-") and path.name.count(".") == 1


def adapted_keys(table: LatencyTable) -> list[str]:
    return [k for k, e in table.entries.items() if ADAPTED in e]


KINDS = ("stem", "mbconv", "head")


def shape_features(space: SearchSpace, layer: LayerSpec) -> list[float]:
    """What the unit is, independent of any device: its kind, kernel, expansion, stride and sizes."""
    return ([float(layer.kind == k) for k in KINDS] + [float(layer.kernel == k) for k in space.kernel_sizes]
            + [float(layer.expand == e) for e in space.expand_ratios]
            + [float(layer.stride == 2), math.log(layer.size), math.log(layer.cin), math.log(layer.cout)])


def features(space: SearchSpace, sources: list[Source], layers: list[LayerSpec]) -> np.ndarray:
    return np.array([[s.log_ms(layer) for s in sources] + shape_features(space, layer) for layer in layers])


def probe_size(space: SearchSpace) -> int:
    return min(PROBE_BLOCKS, max(MIN_PROBE, len(space.all_layers()) // 10))


def probe_layers(space: SearchSpace, sources: list[Source], n: int | None = None) -> list[LayerSpec]:
    """`n` units that span the space as the sources and the shapes see it: greedy k-center from the median unit,
    on standardized features, so that every kind and size of unit has a measured neighbour; then every unit some
    source lacks (a fitted space's new stem), which only a measurement can give."""
    layers, n = covered(space, sources), n or probe_size(space)
    lacking = [layer for layer in space.all_layers() if not all(s.covers(layer) for s in sources)]
    if not layers:
        return lacking
    x = features(space, sources, layers)
    z = (x - x.mean(0)) / (x.std(0) + 1e-9)
    first = int(np.argsort(x[:, 0])[len(layers) // 2])
    chosen, dist = [first], np.linalg.norm(z - z[first], axis=1)
    while len(chosen) < min(n, len(layers)):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(z - z[i], axis=1))
    return [layers[i] for i in chosen] + lacking


class _Ridge:
    """Least squares with a small penalty on standardized features, in log milliseconds."""

    def __init__(self, x: np.ndarray, y: np.ndarray, penalty: float = RIDGE):
        self.mean, self.std = x.mean(0), x.std(0) + 1e-9
        z = np.hstack([np.ones((len(x), 1)), (x - self.mean) / self.std])
        reg = penalty * np.eye(z.shape[1])
        reg[0, 0] = 0.0  # the intercept is not shrunk
        self.w = np.linalg.solve(z.T @ z + reg, z.T @ y)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(x), 1)), (x - self.mean) / self.std]) @ self.w


def rank_sources(sources: list[Source], measured: dict[str, float], layers: list[LayerSpec]) -> list[Source]:
    """The sources whose log latencies correlate best with this device's on the probe, best first."""
    layers = [layer for layer in layers if all(s.covers(layer) for s in sources)]
    y = np.log([measured[layer.key] for layer in layers])

    def agreement(s: Source) -> float:
        x = np.array([s.log_ms(layer) for layer in layers])
        return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 else -1.0

    return sorted(sources, key=agreement, reverse=True)[:MAX_SOURCES]


def adapt_entries(space: SearchSpace, sources: list[Source], measured: dict[str, float]):
    """The adaptation, from the measured probe (ms per unit key): (every unit's latency, the sources it was fitted on,
    the probe's leave-one-out share within ±10%). `profile` writes it; `tools/bench_adapt.py` scores it."""
    probe = [layer for layer in space.all_layers() if layer.key in measured]
    best = rank_sources(sources, measured, probe)
    latencies, loo = fit_adapted(space, best, measured)
    return latencies, best, loo


def fit_adapted(space: SearchSpace, sources: list[Source], measured: dict[str, float]) -> tuple[dict[str, float], float]:
    """Every unit's latency on the new device (ms): measured where it was, adapted elsewhere; and the probe's
    leave-one-out share within ±10%."""
    layers = covered(space, sources)
    probe = [layer for layer in layers if layer.key in measured]
    x, y = features(space, sources, probe), np.log([measured[layer.key] for layer in probe])
    hits = 0
    for i in range(len(probe)):
        keep = np.arange(len(probe)) != i
        hits += abs(math.exp(_Ridge(x[keep], y[keep])(x[i:i + 1])[0] - y[i]) - 1) <= 0.10
    model = _Ridge(x, y)
    predicted = np.exp(model(features(space, sources, layers)))
    out = {layer.key: float(p) for layer, p in zip(layers, predicted)}
    out.update(measured)
    return out, hits / len(probe)
