"""`edgenas profile`: measure every unique block of a space on a target, or adapt the table from other devices' from a
few of them (`tables.adapt`), resumably."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgenas.errors import BadInput, warn
from edgenas.jsonio import exclusive_lock, now
from edgenas.measure.batch import GraphJob, measure_saving
from edgenas.measure.load import busy_note
from edgenas.measure.timing import STATISTIC, MeasureConfig
from edgenas.tables.adapt import (ADAPTED, ADAPTED_META, BORROWED, MIN_COVERED, AdaptReport, adapt_entries,
                                  adapted_keys, borrowed_entries, find_sources, probe_layers)
from edgenas.tables.device import device_info
from edgenas.tables.key import TableKey, schedules_differ
from edgenas.tables.latency_table import LatencyTable
from edgenas.versions import versions


@dataclass(frozen=True)
class ProfileResult:
    table: str
    target: str
    backend: str
    precision: str
    space: str
    entries: int
    measured: int
    reused: int
    seconds: float
    adapted: int = 0  # entries adapted from other devices' tables rather than measured (`tables.adapt`)
    borrowed: int = 0  # entries this device measured for its tables of other spaces: the same units (`tables.adapt`)

    def to_dict(self) -> dict:
        return asdict(self)


def new_table(key: TableKey, backend, cfg: MeasureConfig) -> LatencyTable:
    return LatencyTable(meta={
        "identity": key.identity(),
        "target_definition": key.target.to_dict(),
        "backend_info": backend.describe(),
        "device": device_info(key.target, key.rpc),
        "schedules": key.schedules(),
        "versions": versions(),
        "measure": cfg.to_dict(),
        "profile": {"measured": 0, "seconds": 0.0},
        "created": now(),
    })


def profile(key: TableKey, tables_dir: Path, *, resume: bool = False, overwrite: bool = False, full: bool = False,
            cfg: MeasureConfig | None = None) -> ProfileResult:
    """This device's table. With no table yet and complete tables of other devices for the same space and backend,
    adapted from them (`tables.adapt`) unless `full`; `full` on an adapted table measures its adapted entries."""
    cfg = cfg or MeasureConfig.for_backend(key.backend)
    path = key.path(tables_dir)
    space = key.space
    with exclusive_lock(path):
        table = None
        if path.exists() and not overwrite:
            if not (resume or full):
                old = LatencyTable.load(path)
                raise BadInput(
                    f"{path} already exists ({len(old.entries)} of {len(space.all_layers())} entries, "
                    f"{len(adapted_keys(old))} adapted); pass --resume to measure only what is missing, --full to measure "
                    f"its adapted entries too, or --overwrite to measure everything again"
                )
            table = LatencyTable.open(path, key.identity())
            schedules = key.schedules()
            if stale := schedules_differ(table.meta.get("schedules"), schedules):
                warn(f"{path}: {stale}: measuring every entry again with the kernels compile uses now")
                table.entries, table.correction, table.meta["schedules"] = {}, None, schedules
                for field in (ADAPTING, ADAPTED_META):
                    table.meta.pop(field, None)
        borrowed = {} if table is not None or overwrite or full else borrowable(key, tables_dir)
        plan = None if full or borrowed else adaptation_plan(key, tables_dir, table)
        total = len(space.all_layers())
        start = time.perf_counter()
        if plan:
            sources, probe = plan
            todo = [layer for layer in probe if layer.key not in table.entries] if table else probe
        else:
            todo = table.missing(space) if table else [layer for layer in space.all_layers() if layer.key not in borrowed]
            if full and table:
                todo += [layer for layer in space.all_layers() if layer.key in set(adapted_keys(table))]
        if todo or plan or borrowed:
            backend = key.make_backend(cfg)
            try:
                if table is None:
                    table = new_table(key, backend, cfg)
                    if plan:
                        table.meta[ADAPTING] = {"sources": [s.label for s in sources], "probe": [p.key for p in probe]}
                    if borrowed:
                        table.entries.update(borrowed)
                        table.meta[BORROWED] = sorted({e[BORROWED] for e in borrowed.values()})
                table.path = path
                what = f"adapt {key.target.name}/{key.name} (probe)" if plan else f"profile {key.target.name}/{key.name}"
                _measure_into(table, todo, backend, key, len(probe) if plan else total, what)
            finally:
                backend.close()
            if plan:
                _fill_in(table, key, sources, probe)
            elif full:
                table.meta.pop(ADAPTED_META, None)
                table.correction = None  # fitted to adapted entries: validate again
                table.save()
        adapted = len(adapted_keys(table)) if table else 0
        return ProfileResult(str(path), key.target.name, key.backend, key.precision, space.name, total, len(todo),
                             total - len(todo) - adapted, round(time.perf_counter() - start, 2), adapted, len(borrowed))


#: the table's meta field while an adaptation is measuring its probe: what to resume
ADAPTING = "adapting"


def borrowable(key: TableKey, tables_dir: Path) -> dict[str, dict]:
    """The entries a new table takes from this device's tables of other spaces (`adapt.borrowed_entries`): only when
    they hold at least `MIN_COVERED` of the space's units; else adapting from other devices does more."""
    borrowed = borrowed_entries(key, tables_dir)
    return borrowed if len(borrowed) >= MIN_COVERED * len(key.space.all_layers()) else {}


def adaptation_plan(key: TableKey, tables_dir: Path, table: LatencyTable | None):
    """(sources, probe units) when this table is to be adapted: a new table with sources to adapt from, or an
    interrupted adaptation; else None (a full profile)."""
    if table is not None and ADAPTING not in table.meta:
        return None
    sources = find_sources(key, tables_dir)
    if not sources:
        return None
    if table is not None:
        keys = set(table.meta[ADAPTING]["probe"])
        return sources, [layer for layer in key.space.all_layers() if layer.key in keys]
    probe = probe_layers(key.space, sources)
    return (sources, probe) if len(probe) < len(key.space.all_layers()) else None


def _fill_in(table: LatencyTable, key: TableKey, sources: list, probe: list) -> None:
    """The probe is measured: every other entry adapted from the sources that agree best with it."""
    measured = {layer.key: table.entries[layer.key][STATISTIC] for layer in probe}
    latencies, best, loo = adapt_entries(key.space, sources, measured)
    labels = [s.label for s in best]
    for k, ms in latencies.items():
        if k not in measured:
            table.entries[k] = {STATISTIC: round(ms, 6), ADAPTED: labels}
    table.meta.pop(ADAPTING, None)
    table.meta[ADAPTED_META] = AdaptReport(labels, len(probe), round(loo, 4), len(latencies) - len(measured)).to_dict()
    table.correction = None
    table.save()


def _measure_into(table: LatencyTable, todo: list, backend, key: TableKey, total: int, desc: str) -> None:
    """Measure `todo` into the table, saving after every entry so that a kill or a lost board loses none."""
    stats = table.meta.setdefault("profile", {"measured": 0, "seconds": 0.0})
    jobs = [GraphJob(key.space, layer=layer, seed=i) for i, layer in enumerate(todo)]
    clock = [time.perf_counter()]

    def save(job, measured) -> None:
        table.entries[job.layer.key] = measured.to_dict()
        stats["measured"] += 1
        stats["seconds"] = round(stats["seconds"] + time.perf_counter() - clock[0], 3)
        clock[0] = time.perf_counter()
        table.save()

    load = measure_saving(key, backend, jobs, save, desc=desc, unit="block", total=total,
                          kept=lambda: f"{len(table.entries)} of {len(key.space.all_layers())} entries are saved in "
                                       f"{table.path}",
                          remedy="run the same command with --resume to measure the rest")
    if load.cores is not None:
        # a resumed profile keeps the busiest of its runs: any of them may have slowed the entries it measured
        stats["other_load_cores"] = max(load.cores, stats.get("other_load_cores") or 0.0)
        table.save()
        if note := busy_note(stats["other_load_cores"]):
            warn(f"{table.path}: {note} (`edgenas profile --overwrite`)")
