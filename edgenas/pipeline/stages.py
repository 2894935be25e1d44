"""The seven stages of a build, each a call into the verb of the same job, and what each one's result depends on.

A stage reads its inputs from `Context` and the results of the stages before it, writes its files under the
run directory, and returns a JSON-able result that the build records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

from edgenas.errors import BadInput, warn
from edgenas.measure.rpc import RPCSettings
from edgenas.measure.timing import MeasureConfig
from edgenas.pipeline.config import BuildConfig
from edgenas.pipeline.rundir import fingerprint
from edgenas.space import SearchSpace
from edgenas.tables.key import TableKey
from edgenas.tables.latency_table import STATISTIC, LatencyTable
from edgenas.targets import Target

#: NetAdapt steps of the build's pruning: its default 10% is a short way (5 steps, prune's default, took 5 min here)
PRUNE_STEPS = 2


@dataclass
class Context:
    cfg: BuildConfig
    out: Path
    target: Target
    space: SearchSpace
    tables: Path
    rpc: RPCSettings | None
    threads: int
    results: dict = field(default_factory=dict)  # stage name -> its recorded result

    @cached_property
    def key(self) -> TableKey:
        """The table the search budgets against: this device's, at the precision and with the kernels that ship."""
        c = self.cfg
        return TableKey(self.target, c.backend, c.precision, self.space, self.threads, self.rpc, c.layout, c.tuning_db)

    @property
    def table(self) -> Path:
        return self.key.path(self.tables)

    @property
    def measures_here(self) -> bool:
        return self.rpc is None and self.target.runs_here

    @cached_property
    def data_fingerprint(self) -> str:
        from edgenas.data import load_dataset

        return load_dataset(self.cfg.data).fingerprint

    def measure_config(self, backend: str) -> MeasureConfig:
        return MeasureConfig.for_backend(backend, self.cfg.repeat)


@dataclass(frozen=True)
class Stage:
    name: str
    after: tuple[str, ...]  # the stages whose results it reads
    inputs: Callable[[Context], dict]  # its own settings its result depends on
    run: Callable[[Context], dict]
    outputs: tuple[str, ...] = ()  # its directories in the run directory, emptied when its inputs change


# ---- profile: a valid table of this device, measured only when there is none ----------------------------------
def _profile_inputs(ctx: Context) -> dict:
    """The table's identity, and its checksum once it is complete, current and corrected: a re-profiled table re-runs
    the search."""
    from edgenas.artifact.artifact import sha256
    from edgenas.tables.ready import why_not_measured

    ready = None
    try:
        if why_not_measured(ctx.key, ctx.tables)[0] is None and LatencyTable.load(ctx.table).correction:
            ready = sha256(ctx.table)
    except BadInput:
        pass  # the stage runs, and says what is wrong with the file
    return {"table": str(ctx.table), "identity": ctx.key.identity(), "sha256": ready}


def _profile(ctx: Context) -> dict:
    from edgenas.tables.ready import ready_table

    table = ready_table(ctx.key, ctx.tables, ctx.measure_config(ctx.cfg.backend))
    return {"table": str(ctx.table), "entries": len(table.entries), "precision": ctx.key.precision,
            "device": ctx.key.device, "overrun_p95_pct": table.correction.get("held_out", {}).get("overrun_p95_pct")}


def check_reachable(ctx: Context) -> None:
    """An unreachable budget fails here, after the table and before the training, with the fastest latency there is."""
    from edgenas.search.evolution import check_budget
    from edgenas.tables.latency_model import LatencyModel

    check_budget(ctx.cfg.budget_ms, *LatencyModel(LatencyTable.load(ctx.table), ctx.space).fastest())


# ---- train: the supernet, shared by every build on the same data, space and settings ---------------------------
def _train_config(ctx: Context):
    from edgenas.supernet.train_config import TrainConfig

    return TrainConfig(epochs=ctx.cfg.epochs, limit=ctx.cfg.limit)


def _train_inputs(ctx: Context) -> dict:
    return {"data": ctx.cfg.data, "data_fingerprint": ctx.data_fingerprint, "space": ctx.space.hash,
            "train": _train_config(ctx).to_dict()}


def supernet_dir(ctx: Context) -> Path:
    """Keyed by everything but the epochs: more epochs resume the same run, other data or settings get their own."""
    key = {k: v for k, v in _train_inputs(ctx).items() if k != "train"}
    key["train"] = {k: v for k, v in _train_config(ctx).to_dict().items() if k != "epochs"}
    return ctx.out / f"supernet-{fingerprint(key)[:8]}"


def _train(ctx: Context) -> dict:
    from edgenas.supernet.train import train

    r = train(ctx.cfg.data, ctx.space, supernet_dir(ctx), _train_config(ctx))
    last = r.history[-1]
    return {"run_dir": r.run_dir, "epochs": r.epochs, "resumed_from_epoch": r.resumed_from_epoch, "seconds": r.seconds,
            "val_acc_largest": last["val_acc_largest"], "val_acc_smallest": last["val_acc_smallest"]}


# ---- search ---------------------------------------------------------------------------------------------------
def _search_inputs(ctx: Context) -> dict:
    c = ctx.cfg
    return {"budget_ms": c.budget_ms, "table": ctx.key.identity(), "target": ctx.target.to_dict(), "subnets": c.subnets,
            "margin_pct": c.margin_pct, "evolution": c.evolution.to_dict(), "measure": ctx.measures_here}


def _search(ctx: Context) -> dict:
    from edgenas.search.search import search

    c = ctx.cfg
    r = search(Path(ctx.results["train"]["run_dir"]), ctx.key, c.budget_ms, ctx.tables, ctx.out / "search",
               config=c.evolution, subnets=c.subnets, measure=ctx.measures_here, margin_pct=c.margin_pct,
               cfg=ctx.measure_config(c.backend))
    return r.to_dict()


# ---- prune (after exporting the searched network) --------------------------------------------------------------
def _prune_inputs(ctx: Context) -> dict:
    return {"ratio": ctx.cfg.prune_ratio, "steps": PRUNE_STEPS, "finetune_epochs": ctx.cfg.finetune_epochs}


def _prune(ctx: Context) -> dict:
    from edgenas.search.export import export

    fp32 = ctx.out / "fp32"
    info = export(ctx.out / "search", fp32)
    if ctx.cfg.prune_ratio < 1:
        from edgenas.compress.prune import OutOfReach, prune
        from edgenas.compress.prune_config import PruneConfig

        cfg = PruneConfig(ratio=ctx.cfg.prune_ratio, steps=PRUNE_STEPS, finetune_epochs=ctx.cfg.finetune_epochs)
        try:
            r = prune(fp32, ctx.out / "pruned", cfg)
            return {"model": str(ctx.out / "pruned"), "pruned": True, "before": r["before"], "after": r["after"],
                    "units": r["units"], "seconds": r["seconds"]}
        except OutOfReach as e:  # the searched network already meets the budget: it ships as it is
            warn(f"{e}; shipping the searched network unpruned")
    from edgenas.compress.prune import macs_params
    from edgenas.search.export import load_search_result, searched_network

    s = ctx.results["search"]
    macs, params = macs_params(searched_network(load_search_result(ctx.out / "search")[0])[0])
    same = {"macs": macs, "params": params, "predicted_ms": s["predicted_latency_ms"], "measured_ms": s["measured_latency_ms"],
            "val_accuracy": info.accuracy["fp32"]}
    return {"model": str(fp32), "pruned": False, "before": same, "after": same}


# ---- quantize, compile, bench ------------------------------------------------------------------------------------
def _quantize_inputs(ctx: Context) -> dict:
    from edgenas.qdq import symmetric_for

    return {"precision": ctx.cfg.precision, "calibration": ctx.cfg.calibration, "symmetric": symmetric_for(ctx.target)}


def _quantize(ctx: Context) -> dict:
    """int8 (as the table measured it), or for an fp32 build the pruned model handed on as it is."""
    from edgenas.compress.quantize import QuantizeConfig, quantize

    q, pruned = _quantize_inputs(ctx), ctx.results["prune"]
    if q["precision"] == "fp32":
        return {"model": pruned["model"], "precision": "fp32", "fp32_accuracy": pruned["after"]["val_accuracy"],
                "int8_accuracy": None, "drop_points": None, "remedy": "none (fp32 build)"}
    r = quantize(Path(pruned["model"]), ctx.out / "int8", QuantizeConfig(calibration=q["calibration"], symmetric=q["symmetric"]))
    return {"model": str(ctx.out / "int8"), "precision": "int8", **r.to_dict()}


def _compile_inputs(ctx: Context) -> dict:
    c = ctx.cfg
    return {"target": ctx.target.to_dict(), "tune_trials": c.tune_trials, "tune_minutes": c.tune_minutes, "layout": c.layout,
            "tuning_db": str(c.tuning_db),
            "measure": ctx.measures_here or ctx.rpc is not None}


def _compile(ctx: Context) -> dict:
    from edgenas.artifact.package import package
    from edgenas.compile.build import CompileConfig

    c = ctx.cfg
    art = package(Path(ctx.results["quantize"]["model"]), ctx.target, ctx.out / "artifact", CompileConfig(
        c.tune_trials, c.layout, c.tuning_db, tune_minutes=c.tune_minutes, rpc=ctx.rpc), ctx.measure_config("tvm"), ctx.threads, ctx.rpc)
    files = {name: (art.path / name).stat().st_size for name in art.meta["files"]}
    return {"artifact": str(art.path), "compile": {k: art.meta["compile"][k] for k in ("seconds", "tuning", "ops", "kernel_layout")},
            "files_bytes": files}


def _bench_inputs(ctx: Context) -> dict:
    return {"budget_ms": ctx.cfg.budget_ms, "backend": ctx.cfg.backend, "repeat": ctx.cfg.repeat,
            "rpc": None if ctx.rpc is None else ctx.rpc.tracker + "/" + ctx.rpc.key}


def _bench(ctx: Context) -> dict:
    """The budget is checked on the artifact, with the runtime the table measured: its library for tvm, its int8
    ONNX model for ort; with the table's statistic, so that predicted and measured compare."""
    from edgenas.artifact.artifact import ONNX_FILE, load_artifact
    from edgenas.artifact.runtime import bench

    art = load_artifact(Path(ctx.results["compile"]["artifact"]))
    runs = {}
    if ctx.measures_here or ctx.rpc is not None:
        runs["tvm"] = bench(art, ctx.measure_config("tvm"), ctx.threads, ctx.rpc)
    if ctx.cfg.backend == "ort":
        from edgenas.measure.ort import OrtBackend

        ort = OrtBackend(ctx.target, ctx.measure_config("ort"), ctx.threads)
        runs["ort"] = ort.measure((art.path / ONNX_FILE).read_bytes(), art.input_shape).to_dict()
    checked = runs.get(ctx.cfg.backend)
    measured = checked[STATISTIC] if checked else None
    return {"runs": runs, "checked_on": ctx.cfg.backend, "statistic": STATISTIC, "measured_ms": measured,
            "budget_ms": ctx.cfg.budget_ms, "within_budget": None if measured is None else measured <= ctx.cfg.budget_ms}


STAGES = (
    Stage("profile", (), _profile_inputs, _profile),
    Stage("train", (), _train_inputs, _train),
    Stage("search", ("profile", "train"), _search_inputs, _search, ("search",)),
    Stage("prune", ("search",), _prune_inputs, _prune, ("fp32", "pruned")),
    Stage("quantize", ("prune",), _quantize_inputs, _quantize, ("int8",)),
    Stage("compile", ("quantize",), _compile_inputs, _compile, ("artifact",)),
    Stage("bench", ("compile",), _bench_inputs, _bench),
)
