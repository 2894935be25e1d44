"""Which precision pays on a device: int8 and fp32 of the same networks measured side by side, as they ship.

int8 is not faster everywhere: on x86 CPUs without VNNI, an int8 kernel does little more work per instruction than
an fp32 FMA, and the quantization steps around a small network can cost more than they save. So a build asked for
`--precision auto` measures a few networks of the space in both precisions with the backend that ships (compiled
as `compile` compiles them, or in ONNX Runtime) and ships int8 only where it is faster. The probe is kept next to
the device's tables (`precision-<backend>[-<layout>].json`) and measured again when the kernels change.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_json, now, read_json
from edgenas.measure.timing import MeasureConfig
from edgenas.tables.key import PRECISIONS, TableKey
from edgenas.tables.latency_table import STATISTIC

AUTO = "auto"
#: int8 is kept unless fp32 runs faster by more than this share: closer than that, two probes of the same machine
#: disagree, and int8 is the smaller artifact with the tables already measured
TIE = 0.03
SCHEMA = "edgenas.precision-probe"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PrecisionChoice:
    """What a build ships, and why, in one line."""

    precision: str
    why: str
    #: per precision, the probe networks' latencies (ms, the tables' statistic); empty when nothing was measured
    measured_ms: dict
    probe: str | None  # the probe's file, when one was measured or reused

    def to_dict(self) -> dict:
        return asdict(self)


def probe_networks(space) -> list:
    """A network from the middle of the space and its largest: where budgets bind. (Each costs a compile per
    precision; the smallest networks, where int8's quantization steps weigh most, are rarely what a search picks.)"""
    return [space.sample(random.Random(0)), space.largest()]


def probe_path(key: TableKey, tables: Path) -> Path:
    layout = f"-{key.layout.lower()}" if key.is_tvm else ""
    return key.path(tables).parent / f"precision-{key.backend}{layout}.json"


def _identity(key: TableKey) -> dict:
    return {"backend": key.backend, "space": key.space.hash, "threads": key.threads,
            "layout": key.layout if key.is_tvm else None, "schedules": key.schedules()}


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


def choose_precision(asked: str, key: TableKey, tables: Path, cfg: MeasureConfig, can_measure: bool) -> PrecisionChoice:
    """`asked` (int8, fp32 or auto) for the device of `key` (whose precision is ignored)."""
    if asked != AUTO:
        if asked not in PRECISIONS:
            raise BadInput(f"--precision {asked}: one of {', '.join((*PRECISIONS, AUTO))}")
        return PrecisionChoice(asked, f"asked for (--precision {asked})", {}, None)
    if not can_measure:
        return PrecisionChoice("int8", f"int8 by default: target '{key.target.name}' is not measured here "
                                       f"(give --rpc-tracker to measure it, or --precision)", {}, None)
    path, ident = probe_path(key, tables), _identity(key)
    kept = read_json(path) if path.exists() else None
    if kept and kept.get("schema_version") == SCHEMA_VERSION and kept.get("identity") == ident:
        measured = kept["measured_ms"]
    else:
        measured = measure_probe(key, cfg)
        atomic_write_json(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "identity": ident,
                                 "networks": [a.encoding for a in probe_networks(key.space)], "measured_ms": measured,
                                 "measured": now()})
    i8, f32 = sum(measured["int8"]), sum(measured["fp32"])
    precision = "int8" if i8 <= f32 * (1 + TIE) else "fp32"
    why = (f"{precision}: a middle and the largest network of the space ran in {i8:.4f} ms as int8 and "
           f"{f32:.4f} ms as fp32 on {key.backend} here (int8/fp32 {i8 / f32:.2f})")
    return PrecisionChoice(precision, why, measured, str(path))
