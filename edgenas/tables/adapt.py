"""A table for a new device adapted from the tables of devices already measured, from a few of its blocks.

A full profile measures every unit of the space (466 for the digits space: minutes, most of it TVM compiling). The
other devices' tables already say how the units compare with each other; what a new device changes is mostly how
each kind of unit scales. So `adapt` measures a few units chosen to span the space (k-center over what the source
tables and the unit's shape say about it), fits, in log space, a ridge regression from the source tables' latencies
and the unit's shape to this device's, and fills in the rest. The measured units keep their measurements; every
other entry records that it was adapted, and from which tables. `profile --full` measures the adapted entries.

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


@dataclass(frozen=True)
class Source:
    """A complete table of another device (or another precision or layout of this one) for the same space."""

    label: str  # its path under the tables directory, which says device, backend, precision and layout
    table: LatencyTable

    def log_ms(self, layer: LayerSpec) -> float:
        return math.log(self.table.entries[layer.key][STATISTIC])


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


def find_sources(key: TableKey, tables_dir: Path) -> list[Source]:
    """Every complete table under `tables_dir` for the same space, backend and thread count, but not the one `key`
    names: other devices, and this device's other precisions and layouts. Incomplete tables are passed over, and a
    damaged one is named in a warning line: they are somebody else's tables, not this command's input."""
    found, here = [], key.path(tables_dir).resolve()
    for path in sorted(Path(tables_dir).glob("*/*/**/*.json")):
        if path.resolve() == here or not is_table_file(path, key.backend):
            continue
        try:
            table = LatencyTable.load(path)
        except BadInput as e:
            warn(f"not adapting from it: {e}")
            continue
        ident = table.identity
        if (ident.get("space_hash") != key.space.hash or ident.get("backend") != key.backend
                or ident.get("threads") != key.threads or table.missing(key.space) or adapted_keys(table)):
            continue  # another space or backend, incomplete, or itself adapted: second-hand numbers
        found.append(Source(str(path.relative_to(tables_dir)), table))
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
    on standardized features, so that every kind and size of unit has a measured neighbour."""
    layers, n = space.all_layers(), n or probe_size(space)
    x = features(space, sources, layers)
    z = (x - x.mean(0)) / (x.std(0) + 1e-9)
    first = int(np.argsort(x[:, 0])[len(layers) // 2])
    chosen, dist = [first], np.linalg.norm(z - z[first], axis=1)
    while len(chosen) < min(n, len(layers)):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(z - z[i], axis=1))
    return [layers[i] for i in chosen]


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
    probe = [layer for layer in space.all_layers() if layer.key in measured]
    x, y = features(space, sources, probe), np.log([measured[layer.key] for layer in probe])
    hits = 0
    for i in range(len(probe)):
        keep = np.arange(len(probe)) != i
        hits += abs(math.exp(_Ridge(x[keep], y[keep])(x[i:i + 1])[0] - y[i]) - 1) <= 0.10
    model, layers = _Ridge(x, y), space.all_layers()
    predicted = np.exp(model(features(space, sources, layers)))
    out = {layer.key: float(p) for layer, p in zip(layers, predicted)}
    out.update(measured)
    return out, hits / len(probe)
