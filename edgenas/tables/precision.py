"""Which precision pays on a device: int8 and fp32 of the same networks measured side by side, as they ship.

int8 is not faster everywhere: on x86 CPUs without VNNI, an int8 kernel does little more work per instruction than
an fp32 FMA, and the quantization steps around a small network can cost more than they save. So a build asked for
`--precision auto` measures a few networks of the space in both precisions with the backend that ships (compiled
as `compile` compiles them, or in ONNX Runtime) and ships int8 only where it is faster. The probe is kept next to
the device's tables (`precision-<backend>[-<layout>].json`) and measured again when the kernels change.
"""

from __future__ import annotations

import random
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_json, now, read_json
from edgenas.measure.timing import MeasureConfig
from edgenas.tables.key import PRECISIONS, TableKey
from edgenas.tables.latency_table import STATISTIC

AUTO = "auto"
#: ONNX Runtime times one graph at a time: the models take turns this many times, and each keeps its median
ROUNDS = 3
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
    summed = faster_of({p: sum(measured[p]) for p in PRECISIONS}, "a middle and the largest network of the space",
                       f"on {key.backend} here")
    return PrecisionChoice(summed.precision, summed.why, measured, str(path))


def measure_side_by_side(key: TableKey, cfg: MeasureConfig, models: dict[str, bytes],
                         shape: tuple[int, ...]) -> dict[str, float]:
    """Each model's latency (ms, the tables' statistic) with the backend that ships, in one run that gives every
    model the same machine state: for TVM, compiled as `compile` compiles them into one library and timed in turns
    (`time_functions`); for ONNX Runtime, measured in alternation, `ROUNDS` times."""
    names, backend = list(models), key.make_backend(cfg)
    try:
        if key.is_tvm:
            from edgenas.compile.build import CompileConfig, compile_onnx_graphs, graph_function
            from edgenas.measure.tvm import export_library

            executable, inputs = compile_onnx_graphs([models[n] for n in names], key.target,
                                                     CompileConfig(0, key.layout, key.tuning_db))
            with tempfile.TemporaryDirectory(prefix="edgenas-side-by-side-") as tmp:
                library = export_library(executable, Path(tmp) / "models.so", key.target)
                found = backend.measure_functions(library, [(graph_function(i), shape, inp.dtype)
                                                            for i, inp in enumerate(inputs)])
            return {n: round(getattr(m, STATISTIC), 6) for n, m in zip(names, found)}
        runs: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(ROUNDS):
            for n in names:
                runs[n].append(getattr(backend.measure(models[n], shape), STATISTIC))
        return {n: round(statistics.median(v), 6) for n, v in runs.items()}
    finally:
        backend.close()


def faster_of(measured: dict[str, float], what: str, where: str) -> PrecisionChoice:
    """int8 unless fp32 is faster by more than `TIE`; `measured`: ms per precision of `what`."""
    i8, f32 = measured["int8"], measured["fp32"]
    precision = "int8" if i8 <= f32 * (1 + TIE) else "fp32"
    return PrecisionChoice(precision, f"{precision}: {what} ran in {i8:.4f} ms as int8 and {f32:.4f} ms as fp32 "
                                      f"{where} (int8/fp32 {i8 / f32:.2f})", measured, None)
