"""MetaSchedule tuning into a persistent database per target, so that a later compile reuses the schedules.

MetaSchedule's own `tune_relax` tunes every task it is given again, adding trials on top of the old ones.
We keep a ledger next to its JSON database (`edgenas-tasks.json`: task hash -> trials spent) and tune only
the tasks that have not had the trials asked for, which is what makes a second compile fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgenas.errors import BadInput, Interrupted, one_line, warn
from edgenas.jsonio import atomic_write_json, exclusive_lock, read_json
from edgenas.progress import bar
from edgenas.targets import Target

LEDGER = "edgenas-tasks.json"
#: MetaSchedule's XGBoost cost model with the features and costs it was trained on, kept between runs
COST_MODEL = "cost_model.tar"
DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")  # MetaSchedule's JSONDatabase, a record a line
#: LocalBuilder's 30 s let builds fail silently on 2 busy cores (../shared/NOTES-tvm.md); ours start warm
BUILD_TIMEOUT_S = 300.0
TRIALS_PER_ITER = 64
#: the cap per task when tuning has a time budget and no trial count
TIMED_TRIALS_PER_TASK = 1000


#: TVM's tensor intrinsics by family (`tvm.s_tir.tensor_intrin.<family>`), as its package `__init__` imports them
INTRINSIC_FAMILIES = ("cuda", "arm_cpu", "x86", "rocm", "hexagon", "riscv_cpu")
_INTRIN_PACKAGE = "tvm.s_tir.tensor_intrin"


def intrinsic_families(target: Target) -> tuple[str, ...]:
    """The families a CPU target's schedules and tuning records can name. Importing the whole package parses
    every family, and CUDA's alone is most of that time: a CPU compile has no use for it."""
    if target.device == "cpu" and target.arch == "x86_64":
        return ("x86",)
    if target.device == "cpu" and target.arch in ("aarch64", "arm64", "armv7l"):
        return ("arm_cpu",)
    return INTRINSIC_FAMILIES


def register_tensor_intrinsics(families: tuple[str, ...] = INTRINSIC_FAMILIES) -> None:
    """Import TVM's tensor intrinsics of `families` in a fraction of a second each instead of 26 s in all.

    The import parses hundreds of TVMScript functions, and the parser calls `inspect.stack()` for each. For the
    import machinery's frames, which have no module file, `inspect.getmodule` scans every loaded module
    each time (40 million `hasattr` calls). Caching its answer per file name for the length of the import
    removes that; nothing is loaded or unloaded meanwhile, so the answers cannot change.

    Only the families asked for are parsed: the package is entered without running its `__init__` (which
    imports them all), so TVM's own `import tvm.s_tir.tensor_intrin` (in its builders and tune contexts) finds
    it loaded, and any family imported later by name loads on demand.
    """
    import importlib
    import importlib.util
    import inspect
    import sys
    import types

    original, cache = inspect.getmodule, {}

    def getmodule(obj, _filename=None):
        key = _filename or getattr(getattr(obj, "f_code", None), "co_filename", None)
        if key is None:
            return original(obj, _filename)
        if key not in cache:
            cache[key] = original(obj, _filename)
        return cache[key]

    if _INTRIN_PACKAGE not in sys.modules:
        spec = importlib.util.find_spec(_INTRIN_PACKAGE)
        package = types.ModuleType(_INTRIN_PACKAGE)
        package.__spec__, package.__package__ = spec, _INTRIN_PACKAGE
        package.__path__, package.__file__ = list(spec.submodule_search_locations), spec.origin
        sys.modules[_INTRIN_PACKAGE] = package
    inspect.getmodule = getmodule
    try:
        for family in families:
            importlib.import_module(f"{_INTRIN_PACKAGE}.{family}")
    finally:
        inspect.getmodule = original


def _worker_init(families: tuple[str, ...] = INTRINSIC_FAMILIES) -> None:
    from edgenas.compile.schedules import register_intrinsics

    register_tensor_intrinsics(families)
    register_intrinsics()


def _cross_export(compiler: str, mod) -> str:
    """A candidate linked here into a shared library for the board, so the board needs no compiler of its own
    (MetaSchedule's default export is a tar of objects that the RPC server links on the board)."""
    import tempfile

    import tvm

    path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod.so")
    mod.export_library(path, fcompile=tvm.support.cc.cross_compiler(compiler))
    return path


def pooled_builder(workers: int, timeout_s: float = BUILD_TIMEOUT_S, cross_compiler: str | None = None,
                   families: tuple[str, ...] = INTRINSIC_FAMILIES):
    """A MetaSchedule builder whose worker processes live for the whole tuning run.

    MetaSchedule's LocalBuilder starts fresh worker processes for every batch of candidates, and a fresh
    worker's first build imports `tvm.s_tir.tensor_intrin`: 26 s per batch on this machine, against 0.1 s
    for the build itself. That fixed cost made tuning crawl and, near LocalBuilder's 30 s timeout, made whole
    tasks fail to build and ship untuned (the "Build errors ... N/A" of ../shared/NOTES-tvm.md). Our workers
    start once and import it the fast way. Written here because TVM offers no pooled builder.
    With `cross_compiler`, candidates are linked here for the board (`_cross_export`).
    """
    import functools

    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PooledBuilder(PyBuilder):
        def __init__(self):
            super().__init__()
            self.pool = PopenPoolExecutor(max_workers=workers, timeout=timeout_s, initializer=_worker_init,
                                          initargs=(families,))

        def build(self, build_inputs):
            results = []
            export = functools.partial(_cross_export, cross_compiler) if cross_compiler else None
            jobs = [(None, export, b.mod, b.target, _serialize_params(b.params)) for b in build_inputs]
            for r in self.pool.map_with_error_catching(lambda job: _worker_func(*job), jobs):
                if r.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(r.value, None))
                elif r.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {timeout_s:g} s"))
                else:
                    results.append(BuilderResult(None, f"build failed: {r.value}"))
            return results

    return PooledBuilder()


class _Deadline(Exception):
    """Raised from a measure callback to end a tuning run whose time is up; what was measured is in the database."""


def progress_callback(progress, measured: dict, deadline: float | None, stopped: list):
    """A MetaSchedule measure callback that advances a progress bar by each measured batch, counts the trials each
    task got, and ends the run once `deadline` (a `time.monotonic()` value) has passed.

    MetaSchedule has no time budget; raising from a callback ends `tune_tasks` after the batch in hand, and the
    database callback, which runs first, has committed every measured candidate by then."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            progress.update(len(runner_results))
            measured[task_id] = measured.get(task_id, 0) + len(runner_results)
            if deadline is not None and time.monotonic() > deadline:
                stopped.append(task_id)  # the exception reaches our caller as a bare RuntimeError
                raise _Deadline()

    return Progress()


@contextlib.contextmanager
def _console_to_logs(db_dir: Path):
    """MetaSchedule logs its task tables to stdout, which must stay clean for --json, and TVM's C++ code warns on
    stderr for every candidate it cannot tensorize or vectorize (thousands of lines in a few minutes): both go to
    <db>/logs (`native.log` for the C++ side). Python's own stderr, with the progress bar and our warnings, stays
    on the terminal; builder processes started meanwhile inherit the redirection."""
    import sys

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    logger.setLevel(logging.INFO)  # a higher level makes it print a warning about the level, to stdout
    (db_dir / "logs").mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal = os.dup(2)
    with open(db_dir / "logs" / "native.log", "ab") as native, open(os.devnull, "w") as sink, \
            os.fdopen(os.dup(terminal), "w", buffering=1) as python_stderr, \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(python_stderr):
        os.dup2(native.fileno(), 2)
        try:
            yield
        finally:
            python_stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
            for h in list(logger.handlers):
                if type(h) is logging.StreamHandler:
                    logger.removeHandler(h)


@dataclass(frozen=True)
class TuneReport:
    database: str
    tasks: int
    reused: int  # tasks already tuned with at least the trials asked for
    tuned: int
    trials: int  # measured for the tasks tuned now
    seconds: float
    #: tasks with no valid schedule in the database (every candidate failed): they run untuned
    untuned: list[str] = field(default_factory=list)
    seeded: int = 0  # default schedules measured and committed to the database before the search
    #: measurements the cost model had from earlier runs on this database when the search began (0: it started cold)
    cost_model_samples: int = 0
    stopped_at_deadline: bool = False  # the time budget (--tune-minutes) ended the run
    runner: str = "local"  # where candidates were measured: "local", or the RPC key and tracker

    def to_dict(self) -> dict:
        return asdict(self)


def compile_target(target: Target):
    """The target's TVM target with `num-cores` set, which MetaSchedule needs to tune for CPUs."""
    import tvm

    tgt = target.tvm
    if tgt.kind.name != "llvm" or "num-cores" in tgt.attrs:
        return tgt
    if not target.threads and not target.runs_here:
        raise BadInput(f"{target.source}: set field 'threads' to the board's core count, which tuning needs")
    return tvm.target.Target({**tgt.export(), "num-cores": target.thread_count()}, host=tgt.host)


def database_dir(target: Target, override: Path | None = None) -> Path:
    """`override`, else $EDGENAS_TUNING_DB/<target>, else ~/.cache/edgenas/tuning/<target>-<hash of the TVM target>.

    The hash keeps a `host` tuned on one CPU apart from a `host` on another.
    """
    if override:
        return Path(override)
    base = Path(os.environ.get("EDGENAS_TUNING_DB") or Path.home() / ".cache" / "edgenas" / "tuning")
    digest = hashlib.sha256(str(compile_target(target)).encode()).hexdigest()[:8]
    return base / f"{target.name}-{digest}"


def _task_key(task) -> str:
    import tvm_ffi

    return f"{task.task_name}:{tvm_ffi.structural_hash(task.dispatched[0]) & 0xFFFFFFFFFFFF:012x}"


def _retune(db_dir: Path) -> str:
    return f"delete the directory {db_dir} and compile again to re-tune (or give another --tuning-db)"


def open_database(db_dir: Path, target: Target):
    """MetaSchedule's JSON database in `db_dir`; a damaged file is a one-line error naming it and the remedy."""
    import json

    from tvm.s_tir import meta_schedule as ms

    _worker_init(intrinsic_families(target))  # the records' traces name tensor intrinsics, which must exist first
    try:
        return ms.database.JSONDatabase(work_dir=str(db_dir))
    except RuntimeError as e:  # TVM parses both files at once and does not say which line failed; find it
        for path in (db_dir / name for name in DATABASE_FILES):
            try:
                with open(path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        if line.strip():
                            json.loads(line)
            except OSError:
                continue
            except ValueError as bad:  # not JSON, or not UTF-8
                why = f"line {n} is not valid JSON" if isinstance(bad, json.JSONDecodeError) else "not UTF-8 text"
                raise BadInput(f"{path}: damaged tuning database ({why}); {_retune(db_dir)}") from None
        raise BadInput(f"{db_dir / DATABASE_FILES[0]} and {DATABASE_FILES[1]}: damaged tuning database "
                       f"({one_line(e, last=True)}); {_retune(db_dir)}") from None


def _has_schedule(db, task, target) -> bool:
    return db.query_tuning_record(task.dispatched[0], target, task.task_name) is not None


def _runner(rpc):
    """Where candidates run: this machine, or the board behind an RPC tracker (MetaSchedule's RPCRunner)."""
    from tvm.s_tir import meta_schedule as ms

    if rpc is None:
        return ms.runner.LocalRunner(), "local"
    from edgenas.rpc import open_session

    # a one-line error now if the tracker is down or the key unregistered, not every candidate failing one by one
    open_session(rpc)
    config = ms.runner.RPCConfig(tracker_host=rpc.host, tracker_port=rpc.port, tracker_key=rpc.key,
                                 session_timeout_sec=max(60.0, rpc.timeout_s))
    return ms.runner.RPCRunner(rpc_config=config), f"rpc key '{rpc.key}' via {rpc.tracker}"


def _batch(per_task: int, minutes: float | None) -> int:
    """Candidates measured per batch: a short time budget gets small batches, since the deadline is checked
    only between batches (a batch of 64 takes tens of seconds on 2 cores)."""
    per_iter = min(TRIALS_PER_ITER, per_task)
    return max(8, min(per_iter, int(minutes * 12))) if minutes else per_iter


def _search_strategy(batch: int):
    """MetaSchedule's evolutionary search, its population scaled with the batch it must fill.

    Its default population of 512 costs seconds of search per task and per batch: for the handful of trials
    a quick tune gives each task, that search, not measuring, was most of the time."""
    from tvm.s_tir import meta_schedule as ms

    population = min(512, max(64, 8 * batch))
    return ms.search_strategy.EvolutionarySearch(population_size=population, init_min_unmeasured=min(50, population // 4))


def _cost_model(db_dir: Path, cores: int):
    """MetaSchedule's XGBoost cost model, with the measurements of earlier runs on this database.

    A fresh model proposes at random until it has 100 measurements; one that carries over ranks the first
    batch of a new task already, since schedules of similar kernels share features."""
    from tvm.s_tir import meta_schedule as ms

    model = ms.cost_model.CostModel.create("xgb", num_tuning_cores=cores, tree_method="auto")
    path = db_dir / COST_MODEL
    if path.exists():
        try:
            model.load(str(path))
        except Exception as e:  # noqa: BLE001 - a cache: any unreadable file is replaced at the end of this run
            warn(f"{path}: unreadable cost model ({one_line(e)}); this run's search starts without it")
            model = ms.cost_model.CostModel.create("xgb", num_tuning_cores=cores, tree_method="auto")
    return model


def _save_cost_model(model, db_dir: Path) -> None:
    if model.booster is None:  # under 100 measurements: nothing trained yet (and TVM's load cannot read such a file)
        return
    import warnings

    tmp = db_dir / f".{COST_MODEL}.{os.getpid()}.tar"
    with warnings.catch_warnings():  # xgboost's note on its default file format, which TVM's load reads
        warnings.filterwarnings("ignore", message=".*UBJSON.*")
        model.save(str(tmp))
    os.replace(tmp, db_dir / COST_MODEL)


def _seed_defaults(tasks, db, tgt, builder, runner) -> int:
    """Measure each task's default schedule (schedules.py) and commit it to the database as a tuning record.

    MetaSchedule then starts its search from it and must beat it: the database's best, which a compile applies,
    is never slower than what the untuned build ships. Returns how many were committed."""
    from tvm.s_tir import meta_schedule as ms

    from edgenas.compile.schedules import default_task_schedule

    scheds = [(t, default_task_schedule(t.dispatched[0], tgt)) for t in tasks]
    scheds = [(t, sch) for t, sch in scheds if sch is not None]
    if not scheds:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, tgt) for _, sch in scheds])
    inputs, kept = [], []
    for (t, sch), b in zip(scheds, built):
        if b.error_msg is None:
            device = "cpu" if tgt.kind.name == "llvm" else tgt.kind.name
            inputs.append(ms.runner.RunnerInput(b.artifact_path, device, ms.arg_info.ArgInfo.from_entry_func(sch.mod)))
            kept.append((t, sch))
    committed = 0
    for (t, sch), future in zip(kept, runner.run(inputs)):
        result = future.result()
        if result.error_msg is None and result.run_secs:
            workload = db.commit_workload(t.dispatched[0])
            db.commit_tuning_record(ms.database.TuningRecord(
                sch.trace, workload, [float(v) for v in result.run_secs], tgt,
                ms.arg_info.ArgInfo.from_prim_func(next(iter(t.dispatched[0].functions.values())))))
            committed += 1
    return committed


def _tune_tasks(todo, db, db_dir: Path, target: Target, rpc, per_task: int, batch: int, deadline: float | None,
                measured: dict, stopped: list):
    """MetaSchedule on `todo`, default schedules seeded first; fills `measured` (trials per task) and `stopped` (the
    deadline passed). Returns the database, tasks seeded, where candidates ran and the cost model's starting samples."""
    from tvm.s_tir import meta_schedule as ms

    tgt = compile_target(target)
    families = intrinsic_families(target)
    register_tensor_intrinsics(families)
    builder = pooled_builder(os.cpu_count() or 1, cross_compiler=target.cross_compiler or None, families=families)
    runner, where = _runner(rpc)
    seeded, cost_model_samples = 0, 0
    try:
        with _console_to_logs(db_dir):
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                todo, str(db_dir), strategy=_search_strategy(batch), seed=0)
            cost_model = _cost_model(db_dir, contexts[0].num_threads)
            cost_model_samples = cost_model.data_size
            try:
                seeded = _seed_defaults([t for t in todo if not _has_schedule(db, t, tgt)], db, tgt, builder, runner)
                with bar(per_task * len(todo), f"tune {len(todo)} tasks", unit="trial") as progress:
                    db = ms.tune.tune_tasks(
                        tasks=contexts, task_weights=weights, work_dir=str(db_dir),
                        max_trials_global=per_task * len(todo), max_trials_per_task=per_task,
                        num_trials_per_iter=batch, builder=builder, runner=runner, database=db, cost_model=cost_model,
                        # the gradient scheduler sends every task a batch before it collects any result, so a
                        # deadline would be seen only after that whole first pass
                        task_scheduler="round-robin" if deadline else "gradient",
                        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                           progress_callback(progress, measured, deadline, stopped)],
                    )
            finally:
                _save_cost_model(cost_model, db_dir)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: the schedules tuned so far are kept in {db_dir}; compile again to "
                          f"tune the rest") from None
    except Exception:  # noqa: BLE001 - our deadline comes back through TVM's C++ as a RuntimeError
        if not stopped:
            raise
    return db, seeded, where, cost_model_samples


def tune(mod, target: Target, db_dir: Path, trials: int, minutes: float | None = None, rpc=None):
    """Tune the fused module's tasks that the database lacks: `trials` spread evenly over them (0 with `minutes`:
    as many as the time allows), for at most `minutes`, measured here or on the board behind `rpc`.

    Returns the report and the database, loaded once: parsing a database of a few thousand records takes seconds."""
    from tvm.s_tir import meta_schedule as ms

    start = time.perf_counter()
    deadline = time.monotonic() + minutes * 60 if minutes else None
    tgt = compile_target(target)
    tasks = [t for t in ms.relax_integration.extract_tasks(mod, tgt) if not t.mod.attrs.get("tirx.is_scheduled", False)]
    per_task = max(1, math.ceil(trials / max(1, len(tasks)))) if trials else TIMED_TRIALS_PER_TASK
    batch = _batch(per_task, minutes)
    db_dir.mkdir(parents=True, exist_ok=True)
    measured, stopped, seeded, where, cost_model_samples = {}, [], 0, "local", 0
    with exclusive_lock(db_dir / LEDGER):
        ledger = read_json(db_dir / LEDGER, remedy=_retune(db_dir)) if (db_dir / LEDGER).exists() else {}
        db = open_database(db_dir, target)
        todo = [t for t in tasks if ledger.get(_task_key(t), 0) < per_task]
        if todo:
            db, seeded, where, cost_model_samples = _tune_tasks(todo, db, db_dir, target, rpc, per_task, batch, deadline,
                                                                measured, stopped)
            timed_out = bool(stopped)
            for i, t in enumerate(todo):
                ledger[_task_key(t)] = per_task if not timed_out else ledger.get(_task_key(t), 0) + measured.get(i, 0)
            atomic_write_json(db_dir / LEDGER, ledger)
            if timed_out:  # tune_tasks returned no database
                db = open_database(db_dir, target)
        untuned = [t.task_name for t in tasks if not _has_schedule(db, t, tgt)]
    if untuned:
        warn(f"{len(untuned)} task(s) have no working schedule in {db_dir} and run untuned: {', '.join(untuned[:5])}")
    return TuneReport(str(db_dir), len(tasks), len(tasks) - len(todo), len(todo), sum(measured.values()),
                      round(time.perf_counter() - start, 2), untuned, seeded, cost_model_samples, bool(stopped),
                      where), db


def apply_database(mod, target: Target, db_dir: Path, db=None):
    """`mod` with every task the database (`db`, or the one in `db_dir`) holds a schedule for replaced by its best."""
    from tvm import relax

    if db is None:
        if not (db_dir / DATABASE_FILES[0]).exists():
            return mod
        db = open_database(db_dir, target)
    with compile_target(target), db:
        return relax.transform.MetaScheduleApplyDatabase()(mod)

