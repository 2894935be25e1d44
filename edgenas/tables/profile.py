"""`edgenas profile`: measure every unique block of a space on a target, resumably."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgenas.errors import BadInput, EdgenasError, Interrupted
from edgenas.jsonio import exclusive_lock
from edgenas.measure.backends import make_backend
from edgenas.measure.onnx_export import to_onnx
from edgenas.measure.rpc import RPCSettings
from edgenas.measure.timing import MeasureConfig
from edgenas.progress import bar
from edgenas.space import SearchSpace
from edgenas.space.blocks import build_layer, randomize_bn
from edgenas.tables.latency_table import LatencyTable, device_info, identity, now, table_path
from edgenas.targets import Target
from edgenas.versions import versions


@dataclass(frozen=True)
class ProfileResult:
    table: str
    target: str
    backend: str
    space: str
    entries: int
    measured: int
    reused: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def new_table(target: Target, backend, space: SearchSpace, threads: int, cfg: MeasureConfig, rpc) -> LatencyTable:
    return LatencyTable(meta={
        "identity": identity(target, backend.name, space, threads, rpc),
        "target_definition": target.to_dict(),
        "backend_info": backend.describe(),
        "device": device_info(target, rpc),
        "versions": versions(),
        "measure": cfg.to_dict(),
        "created": now(),
    })


def profile(
    target: Target,
    backend_name: str,
    space: SearchSpace,
    tables_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    rpc: RPCSettings | None = None,
    cfg: MeasureConfig | None = None,
) -> ProfileResult:
    threads = threads or target.thread_count()
    cfg = cfg or MeasureConfig.for_backend(backend_name)
    path = table_path(tables_dir, target, backend_name, space)
    expected = identity(target, backend_name, space, threads, rpc)
    with exclusive_lock(path):
        table = None
        if path.exists() and not overwrite:
            if not resume:
                old = LatencyTable.load(path)
                raise BadInput(
                    f"{path} already exists ({len(old.entries)} of {len(space.all_layers())} entries); pass --resume "
                    f"to measure only what is missing, or --overwrite to measure everything again"
                )
            table = LatencyTable.open(path, expected, target)
        todo = table.missing(space) if table else space.all_layers()
        total = len(space.all_layers())
        start = time.perf_counter()
        if todo:
            backend = make_backend(backend_name, target, cfg, threads, rpc)
            try:
                table = table or new_table(target, backend, space, threads, cfg, rpc)
                table.path = path
                _measure_into(table, todo, backend, total, f"profile {target.name}/{backend_name}")
            finally:
                backend.close()
        return ProfileResult(str(path), target.name, backend_name, space.name, total, len(todo), total - len(todo),
                             round(time.perf_counter() - start, 2))


def _measure_into(table: LatencyTable, todo: list, backend, total: int, desc: str) -> None:
    """Measure `todo` into the table, saving after every entry so that a kill or a lost board loses none."""
    done = 0
    try:
        with bar(total, desc, initial=total - len(todo), unit="block") as progress:
            for i, layer in enumerate(todo):
                model = to_onnx(randomize_bn(build_layer(layer), seed=i), layer.input_shape)
                try:
                    measured = backend.measure(model, layer.input_shape)
                except EdgenasError as e:  # e.g. the RPC board is gone for good: say what is kept
                    raise type(e)(
                        f"{e}; {total - len(todo) + done} of {total} entries are saved in {table.path}; run the same "
                        f"command with --resume to measure the rest"
                    ) from None
                table.entries[layer.key] = measured.to_dict()
                table.save()
                done += 1
                progress.update()
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: {total - len(todo) + done} of {total} entries are saved in {table.path}; "
            f"run the same command with --resume to measure the rest"
        ) from None
