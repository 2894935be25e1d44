"""Which runtime and precision ship to a device: each one that can run there, measured on the same networks as they
ship, and the fastest goes on.

Neither is the same everywhere. On x86 CPUs without VNNI an int8 kernel does little more work per instruction than
an fp32 FMA, so int8 can lose to fp32. And TVM's default kernels win on small networks but lose to ONNX Runtime's and
OpenVINO's hand-written ones at MobileNet size. So a build asked for `--backend auto` and `--precision auto` measures
a few networks of the space with every runtime it can ship (TVM compiled as `compile` compiles them; ONNX Runtime;
OpenVINO where installed) in both precisions, and ships the fastest pair: the floor under what edgenas ships is the
fastest runtime it could have shipped instead. Each runtime's probe is kept next to the device's tables
(`precision-<backend>[-<layout>].json`) and measured again when its kernels change. The quantize stage has the last
word, on the shipped network itself (`measure_deployments`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_json, now, read_json
from edgenas.measure.backends import AUTO_BACKEND, BACKENDS, reachable_backends
from edgenas.measure.shipped import measure_side_by_side
from edgenas.measure.timing import STATISTIC, MeasureConfig
from edgenas.tables.key import PRECISIONS, TableKey, check_precision

AUTO = "auto"
#: the first deployment in `preference` order is kept unless another runs faster by more than this share: closer
#: than that, two probes of the same machine disagree
TIE = 0.03
SCHEMA = "edgenas.precision-probe"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Deployment:
    """A runtime and a precision: what ships."""

    backend: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


def preference() -> list[Deployment]:
    """On a tie: TVM first (its library needs only TVM's runtime, and its tables are the most often measured), int8
    before fp32 (the smaller artifact)."""
    return [Deployment(b, p) for b in BACKENDS for p in PRECISIONS]


@dataclass(frozen=True)
class DeploymentChoice:
    """What a build ships, and why, in one line."""

    backend: str
    precision: str
    why: str
    #: backend -> precision -> the probe networks' latencies (ms, the tables' statistic); {} when nothing was measured
    measured_ms: dict
    probe: dict  # backend -> its probe's file, for the backends measured
    passed_over: list = field(default_factory=list)  # one phrase per runtime that could not be measured, and why

    def to_dict(self) -> dict:
        return asdict(self)


def probe_networks(space) -> list:
    """A network from the middle of the space and its largest: where budgets bind. (Each costs a compile per
    precision; the smallest networks, where int8's quantization steps weigh most, are rarely what a search picks.)"""
    return [space.sample(random.Random(0)), space.largest()]


def probe_path(key: TableKey, tables: Path) -> Path:
    """Next to the device's tables, named as its tables are less the precision (`precision-tvm-nhwc.json`)."""
    kind = key.name.removeprefix(f"{key.backend}-{key.precision}")
    return key.path(tables).parent / f"precision-{key.backend}{kind}.json"


def _identity(key: TableKey) -> dict:
    return {"backend": key.backend, "space": key.space.hash, "threads": key.threads,
            "layout": key.layout if key.is_tvm else None, "schedules": key.schedules(),
            **{k: v for k, v in key.identity().items() if k == "max_cpu_isa"}}


def measure_probe(key: TableKey, cfg: MeasureConfig) -> dict:
    """Per precision, the probe networks measured as they ship (int8 quantized as `quantize` does it for the target)."""
    from edgenas.measure.batch import GraphJob, measure_jobs

    # both precisions in one run, so that the compiles of all of them share the workers
    jobs = [GraphJob(key.space, arch=a, precision=p) for p in PRECISIONS for a in probe_networks(key.space)]
    found = {p: [] for p in PRECISIONS}
    backend = key.make_backend(cfg)
    try:
        for job, m in measure_jobs(key, backend, jobs, min_pooled=2):
            found[job.precision].append(round(getattr(m, STATISTIC), 6))
    finally:
        backend.close()
    return found


def probed(key: TableKey, tables: Path, cfg: MeasureConfig) -> tuple[dict, str]:
    """The probe of `key`'s backend on its device: kept from an earlier build when it still holds, else measured."""
    path, ident = probe_path(key, tables), _identity(key)
    kept = read_json(path) if path.exists() else None
    if kept and kept.get("schema_version") == SCHEMA_VERSION and kept.get("identity") == ident:
        return kept["measured_ms"], str(path)
    measured = measure_probe(key, cfg)
    atomic_write_json(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "identity": ident,
                             "networks": [a.encoding for a in probe_networks(key.space)], "measured_ms": measured,
                             "measured": now()})
    return measured, str(path)


def check_asked(backend: str, precision: str) -> None:
    if precision != AUTO:
        check_precision(precision)
    if backend != AUTO_BACKEND and backend not in BACKENDS:
        raise BadInput(f"--backend {backend}: one of {', '.join((*BACKENDS, AUTO_BACKEND))}")


def choose_deployment(backend: str, precision: str, key_for: Callable[[str], TableKey], tables: Path,
                      cfg_for: Callable[[str], MeasureConfig], can_measure: bool) -> DeploymentChoice:
    """`backend` (a runtime, or auto) and `precision` (int8, fp32 or auto) for the device of `key_for(backend)`
    (whose precision is ignored). `can_measure`: the target runs here, or a board is reachable over RPC."""
    check_asked(backend, precision)
    some = key_for(BACKENDS[0])
    backends, passed = ([backend], []) if backend != AUTO_BACKEND else reachable_backends(some.target, some.rpc)
    precisions = PRECISIONS if precision == AUTO else (precision,)
    if len(backends) == len(precisions) == 1:
        return DeploymentChoice(backends[0], precisions[0], f"asked for (--backend {backends[0]} --precision "
                                                            f"{precisions[0]})", {}, {}, passed)
    if not can_measure:
        return DeploymentChoice(backends[0], precisions[0], f"{backends[0]} {precisions[0]} by default: target "
                                f"'{some.target.name}' is not measured here (give --rpc-tracker to measure it, or "
                                f"--backend and --precision)", {}, {}, passed)
    measured, probes = {}, {}
    for b in backends:
        measured[b], probes[b] = probed(key_for(b), tables, cfg_for(b))
    summed = {Deployment(b, p): sum(measured[b][p]) for b in backends for p in precisions}
    where = "here" if some.rpc is None else f"on the board '{some.rpc.key}'"
    pick, why = fastest(summed, "a middle and the largest network of the space", where)
    return DeploymentChoice(pick.backend, pick.precision, why, measured, probes, passed)


def fastest(measured: dict[Deployment, float], what: str, where: str) -> tuple[Deployment, str]:
    """The fastest deployment of `measured` (ms of `what`), the earlier in `preference` within `TIE` of it; and why,
    in one line with every figure."""
    best = min(measured.values())
    pick = next(d for d in preference() if d in measured and measured[d] <= best * (1 + TIE))
    others = ", ".join(f"{d.label} {ms:.4f}" for d, ms in measured.items() if d != pick)
    return pick, f"{pick.label}: {what} ran in {measured[pick]:.4f} ms with {pick.label} {where}" + \
        (f" (against {others} ms)" if others else "")


def measure_deployments(keys: dict[str, TableKey], cfg_for: Callable[[str], MeasureConfig],
                        models: dict[str, bytes], shape: tuple[int, ...]) -> dict[Deployment, float]:
    """The shipped network as each precision of `models` made it, measured side by side with each backend of
    `keys` (backend -> its table's key): the last word of a build that may ship any of them."""
    found = {}
    for b, key in keys.items():
        for p, ms in measure_side_by_side(key, cfg_for(b), models, {p: shape for p in models}).items():
            found[Deployment(b, p)] = ms
    return found


def by_backend(measured: dict[Deployment, float]) -> dict[str, dict[str, float]]:
    """`measured` as JSON holds it: backend -> precision -> ms."""
    out: dict[str, dict[str, float]] = {}
    for d, ms in measured.items():
        out.setdefault(d.backend, {})[d.precision] = ms
    return out


def last_word(measured: dict[Deployment, float], refuses: Callable[[Deployment], str | None], what: str,
              where: str) -> tuple[Deployment, str]:
    """The fastest deployment of `measured` that `refuses` (one phrase: why it may not ship, e.g. int8 judged again
    on its own runtime failed the gate; or None) lets through; and why, in one line. The deployment preferred first
    is always let through by the caller's rule (its int8 passed the gate)."""
    left, refused = dict(measured), []
    while True:
        pick, why = fastest(left, what, where)
        if len(left) == 1 or (no := refuses(pick)) is None:
            return pick, why + (f"; refused: {'; '.join(refused)}" if refused else "")
        refused.append(f"{pick.label} ({no})")
        del left[pick]
