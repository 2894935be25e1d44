"""`edgenas profile`: measure every unique block of a space on a target, resumably."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgenas.errors import BadInput, EdgenasError, Interrupted, warn
from edgenas.jsonio import exclusive_lock, now
from edgenas.measure.batch import GraphJob, measure_jobs
from edgenas.measure.load import LoadMeter, busy_note
from edgenas.measure.timing import MeasureConfig
from edgenas.progress import bar
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


def profile(key: TableKey, tables_dir: Path, *, resume: bool = False, overwrite: bool = False,
            cfg: MeasureConfig | None = None) -> ProfileResult:
    cfg = cfg or MeasureConfig.for_backend(key.backend)
    path = key.path(tables_dir)
    space = key.space
    with exclusive_lock(path):
        table = None
        if path.exists() and not overwrite:
            if not resume:
                old = LatencyTable.load(path)
                raise BadInput(
                    f"{path} already exists ({len(old.entries)} of {len(space.all_layers())} entries); pass --resume "
                    f"to measure only what is missing, or --overwrite to measure everything again"
                )
            table = LatencyTable.open(path, key.identity())
            schedules = key.schedules()
            if stale := schedules_differ(table.meta.get("schedules"), schedules):
                warn(f"{path}: {stale}: measuring every entry again with the kernels compile uses now")
                table.entries, table.correction, table.meta["schedules"] = {}, None, schedules
        todo = table.missing(space) if table else space.all_layers()
        total = len(space.all_layers())
        start = time.perf_counter()
        if todo:
            backend = key.make_backend(cfg)
            try:
                table = table or new_table(key, backend, cfg)
                table.path = path
                _measure_into(table, todo, backend, key, total, f"profile {key.target.name}/{key.name}")
            finally:
                backend.close()
        return ProfileResult(str(path), key.target.name, key.backend, key.precision, space.name, total, len(todo),
                             total - len(todo), round(time.perf_counter() - start, 2))


def _measure_into(table: LatencyTable, todo: list, backend, key: TableKey, total: int, desc: str) -> None:
    """Measure `todo` into the table, saving after every entry so that a kill or a lost board loses none."""
    done = 0
    stats = table.meta.setdefault("profile", {"measured": 0, "seconds": 0.0})
    jobs = [GraphJob(key.space, layer=layer, seed=i) for i, layer in enumerate(todo)]
    load = LoadMeter(here=key.rpc is None)
    try:
        with bar(total, desc, initial=total - len(todo), unit="block") as progress:
            t0 = time.perf_counter()
            try:
                for job, measured in measure_jobs(key, backend, jobs, load):
                    table.entries[job.layer.key] = measured.to_dict()
                    stats["measured"] += 1
                    stats["seconds"] = round(stats["seconds"] + time.perf_counter() - t0, 3)
                    t0 = time.perf_counter()
                    table.save()
                    done += 1
                    progress.update()
            except EdgenasError as e:  # e.g. the RPC board is gone for good: say what is kept
                raise type(e)(
                    f"{e}; {total - len(todo) + done} of {total} entries are saved in {table.path}; run the same "
                    f"command with --resume to measure the rest"
                ) from None
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {total - len(todo) + done} of {total} entries are saved in {table.path}; "
            f"run the same command with --resume to measure the rest"
        ) from None
    if load.cores is not None:
        # a resumed profile keeps the busiest of its runs: any of them may have slowed the entries it measured
        stats["other_load_cores"] = max(load.cores, stats.get("other_load_cores") or 0.0)
        table.save()
        if note := busy_note(stats["other_load_cores"]):
            warn(f"{table.path}: {note} (`edgenas profile --overwrite`)")
