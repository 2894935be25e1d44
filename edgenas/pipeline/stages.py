"""The seven stages of a build, each a call into the verb of the same job, and what each one's product depends on.

A stage reads its settings from `Context` and the typed products of the stages before it (`pipeline/products.py`),
writes its files under the run directory, and returns its own product, which the build records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

from edgenas.errors import BadInput, warn
from edgenas.rpc import RPCSettings
from edgenas.measure.timing import STATISTIC, MeasureConfig, noisy, readings_against
from edgenas.pipeline.config import BuildConfig
from edgenas.pipeline.products import (BenchProduct, CompileFacts, CompiledProduct, NetworkFigures, PrecisionProduct,
                                       PrunedProduct, QuantizedProduct, SupernetProduct, TableProduct)
from edgenas.pipeline.rundir import fingerprint
from edgenas.compile.qdq import symmetric_for
from edgenas.search.report import SearchReport
from edgenas.space import SearchSpace
from edgenas.tables.key import TableKey
from edgenas.tables.latency_table import LatencyTable
from edgenas.targets import Target



@dataclass
class Context:
    cfg: BuildConfig
    out: Path
    target: Target
    space: SearchSpace
    tables: Path
    rpc: RPCSettings | None
    threads: int
    results: dict = field(default_factory=dict)  # stage name -> its product

    @property
    def precision(self) -> str:
        """What ships: the precision stage's choice (which runs first)."""
        return self.results["precision"].precision

    @property
    def backend(self) -> str:
        """The runtime whose table the search budgets against: the precision stage's choice."""
        return self.results["precision"].backend

    def key_for(self, backend: str, precision: str) -> TableKey:
        c = self.cfg
        return TableKey(self.target, backend, precision, self.space, self.threads, self.rpc, c.deploy.layout, c.deploy.tuning_db)

    def key_at(self, precision: str) -> TableKey:
        return self.key_for(self.backend, precision)

    @cached_property
    def backends(self) -> list[str]:
        """The runtimes that may ship: the one asked for, or (auto) every one that runs the target where it is measured."""
        from edgenas.measure.backends import AUTO_BACKEND, reachable_backends

        return reachable_backends(self.target, self.rpc)[0] if self.cfg.deploy.backend == AUTO_BACKEND else [self.cfg.deploy.backend]

    @cached_property
    def key(self) -> TableKey:
        """The table the search budgets against: this device's, at the precision and with the kernels that ship."""
        return self.key_at(self.precision)

    @property
    def table(self) -> Path:
        return self.key.path(self.tables)

    @property
    def measures_here(self) -> bool:
        return self.rpc is None and self.target.runs_here

    @property
    def can_measure(self) -> bool:
        """The target is measured: here, or on a board over RPC."""
        return self.measures_here or self.rpc is not None

    @cached_property
    def data_fingerprint(self) -> str:
        from edgenas.data import load_dataset
        from edgenas.supernet.train import check_data_fits

        data = load_dataset(self.cfg.data)
        check_data_fits(data.x.shape[1], len(data.classes), data.source, self.space)
        return data.fingerprint

    def check_inputs(self) -> None:
        """What the stages will read, read and checked before any of them runs: a bad data file fails in seconds,
        not after a profile (the flags, the target and the space are checked when the context is made)."""
        self.data_fingerprint  # noqa: B018 - loads and checks the data set, kept for the train stage

    def measure_config(self, backend: str) -> MeasureConfig:
        return MeasureConfig.for_backend(backend, self.cfg.deploy.repeat)


    @cached_property
    def searched(self):
        """The search's winner built once with the supernet's weights, for export, prune and MAC counting."""
        from edgenas.search.export import searched_network

        s = self.results["search"]
        return searched_network(s, Path(s.out_dir) / "best.json")


@dataclass(frozen=True)
class Stage:
    name: str
    after: tuple[str, ...]  # the stages whose products it reads
    #: the parts of the build's config it reads (`BuildConfig` fields: a stage's config, `deploy`, `budget_ms`, ...);
    #: the runner fingerprints exactly these, whole
    reads: tuple[str, ...]
    #: what else its product depends on that no flag says: what the flags resolve to here (the target's definition,
    #: the space's hash, the data's checksum, the table's identity) and the constants of its decisions
    facts: Callable[[Context], dict]
    run: Callable[[Context], object]  # returns `product`
    product: type  # with to_dict() and from_dict(d, where), to record it and to read it back on a resume
    outputs: tuple[str, ...] = ()  # its directories in the run directory, emptied when its inputs change

    def inputs(self, ctx) -> dict:
        """Everything its product depends on but the products it follows: the config parts it reads, and its facts."""
        return {"reads": {part: _plain(getattr(ctx.cfg, part)) for part in self.reads}, "facts": self.facts(ctx)}


def _plain(value):
    """A config part as JSON would hold it, for the fingerprint."""
    return value.to_dict() if hasattr(value, "to_dict") else asdict(value) if is_dataclass(value) else value


# ---- precision: what ships, measured when asked for auto ----------------------------------------------------------
def _precision_facts(ctx: Context) -> dict:
    return {"backends": ctx.backends, "target": ctx.target.to_dict(), "space": ctx.space.hash, "measure": ctx.can_measure}


def _precision(ctx: Context) -> PrecisionProduct:
    """The runtime and precision that ship (`tables.deployment`); a runtime that cannot be measured is passed over
    with one line."""
    from edgenas.tables.deployment import choose_deployment

    c = ctx.cfg
    choice = choose_deployment(c.deploy.backend, c.deploy.precision, lambda b: ctx.key_for(b, "int8"), ctx.tables, ctx.measure_config,
                               ctx.can_measure)
    if choice.passed_over and ctx.can_measure:
        warn("--backend auto passed over " + "; ".join(choice.passed_over))
    return PrecisionProduct(**choice.to_dict())


# ---- profile: a valid table of this device, measured only when there is none ----------------------------------
def _profile_facts(ctx: Context) -> dict:
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


def _profile(ctx: Context) -> TableProduct:
    from edgenas.tables.ready import ready_table

    table = ready_table(ctx.key, ctx.tables, ctx.measure_config(ctx.backend))
    return TableProduct(str(ctx.table), len(table.entries), ctx.key.precision, ctx.key.device,
                        table.correction.overrun_p95_pct)


def check_reachable(ctx: Context) -> None:
    """An unreachable budget fails here, after the table and before the training, with the fastest latency there is."""
    from edgenas.search.evolution import check_budget
    from edgenas.tables.latency_model import LatencyModel

    check_budget(ctx.cfg.budget_ms, *LatencyModel(LatencyTable.load(ctx.table), ctx.space).fastest())


# ---- train: the supernet, shared by every build on the same data, space and settings ---------------------------
def _train_config(ctx: Context):
    return ctx.cfg.train


def _train_facts(ctx: Context) -> dict:
    return {"data_fingerprint": ctx.data_fingerprint, "space": ctx.space.hash}


def supernet_dir(ctx: Context) -> Path:
    """Keyed by everything but the epochs: more epochs resume the same run, other data or settings get their own."""
    from edgenas.supernet.train_config import HOW_LONG

    key = {"data": ctx.cfg.data, **_train_facts(ctx),
           "train": {k: v for k, v in _train_config(ctx).to_dict().items() if k not in HOW_LONG}}
    return ctx.out / f"supernet-{fingerprint(key)[:8]}"


def _train(ctx: Context) -> SupernetProduct:
    from edgenas.supernet.train import train

    r = train(ctx.cfg.data, ctx.space, supernet_dir(ctx), _train_config(ctx))
    last = r.history[-1]
    return SupernetProduct(r.run_dir, r.epochs, r.resumed_from_epoch, r.seconds, last["val_acc_largest"], last["val_acc_smallest"])


# ---- search ---------------------------------------------------------------------------------------------------
def _search_facts(ctx: Context) -> dict:
    return {"table": ctx.key.identity(), "target": ctx.target.to_dict(), "measure": ctx.measures_here}


def _search_at(ctx: Context, budget_ms: float, out: Path) -> SearchReport:
    from edgenas.search.search import search

    c = ctx.cfg
    return search(Path(ctx.results["train"].run_dir), ctx.key, budget_ms, ctx.tables, out, config=c.search.evolution,
                  subnets=c.search.subnets, measure=ctx.measures_here, margin_pct=c.search.margin_pct,
                  cfg=ctx.measure_config(ctx.backend))


def _search(ctx: Context) -> SearchReport:
    return _search_at(ctx, ctx.cfg.budget_ms, ctx.out / "search")


# ---- prune (after exporting and fine-tuning the searched network) -----------------------------------------------
def _prune_facts(ctx: Context) -> dict:
    return {"target": ctx.target.to_dict(), "measure": ctx.can_measure}


def _prune(ctx: Context) -> PrunedProduct:
    """The searched network exported and fine-tuned (`compress.finetune`), then, when it must or may:
    - pruned to fit, when the search's front had no network that measured within the budget (`search.fit`): NetAdapt to
      the budget, its goal scaled by how far over it measured (`compress.pays.fit_goal`);
    - with `--prune-ratio` below 1, against a network searched above the budget (at budget / ratio) and pruned down to
      it, which ships only when it is more accurate, both fine-tuned alike (`compress.pays.pruned_from_above_pays`).
    Built once (`Context.searched`)."""
    from edgenas.compress.finetune import finetune
    from edgenas.compress.pays import FITS, must_fit
    from edgenas.compress.prune_input import PruneInput
    from edgenas.compress.surgery import macs_params
    from edgenas.search.export import export

    fp32, searched, s = ctx.out / "fp32", ctx.searched, ctx.results["search"]
    onnx_model, info = export(searched, fp32)
    before = NetworkFigures(*macs_params(searched.net), s.predicted_latency_ms, s.measured_latency_ms, info.accuracy["fp32"])
    measures = ctx.can_measure
    inp = PruneInput(searched, onnx_model, info, fp32 / "model.onnx", LatencyTable.load(ctx.table),
                     ctx.key if measures else None, None if measures else f"target '{ctx.target.name}' is not measured here")
    shipped, tuned_fig = str(fp32), None
    c = ctx.cfg.compress
    if c.distill.epochs:
        tuned = finetune(inp, ctx.out / "tuned", c.distill)
        inp = tuned.as_prune_input(inp, ctx.out / "tuned" / "model.onnx")
        shipped, tuned_fig = str(ctx.out / "tuned"), replace(before, val_accuracy=tuned.info.accuracy["fp32"])
    why = FITS if s.fit is not None else "--prune-ratio 1"
    unpruned = PrunedProduct(shipped, False, before, tuned_fig or before, [], None, why, tuned_fig)
    if must_fit(s):
        return _pruned_to_fit(ctx, inp, unpruned)
    if c.prune_ratio < 1:
        return _pruned_from_above(ctx, inp, unpruned)
    return unpruned


def _pruned_to_fit(ctx: Context, inp, unpruned: PrunedProduct) -> PrunedProduct:
    """Fitting is what pruning is for here: it goes on whatever it cost."""
    from edgenas.compress.pays import fit_goal
    from edgenas.compress.prune import OutOfReach, prune
    from edgenas.search.fit import HEADROOM, said

    s, budget = ctx.results["search"], ctx.cfg.budget_ms
    goal = fit_goal(s, budget)
    if goal >= s.predicted_latency_ms:  # its lower reading fits, and the noise is what put it over: nothing to prune
        return replace(unpruned, why_not=f"not pruned: the searched network read {_ms(s.measured_latency_ms)}, within the "
                                         f"budget on its lower reading; pruning has nothing to remove at the table's "
                                         f"prediction ({s.predicted_latency_ms:.4f} ms)")
    cfg = ctx.cfg.compress.prune_config(target_ms=goal)
    try:
        r = prune(inp, ctx.out / "pruned", cfg)
    except OutOfReach as e:  # nothing pruning can do: the searched network ships as it is, and the bench says over
        warn(f"{e}; shipping the searched network unpruned")
        return replace(unpruned, why_not=str(e))
    after = NetworkFigures(**r.after)
    return PrunedProduct(str(ctx.out / "pruned"), True, unpruned.before, after, r.units, r.seconds, None, unpruned.tuned,
                         fit=f"pruned to fit: the fastest network measured on the search's front "
                             f"{said(s.measured_readings_ms or [s.measured_latency_ms])}, over the {budget:g} ms budget "
                             f"less its {HEADROOM:.0%} headroom; pruned, {_ms(after.measured_ms)}")


def _pruned_from_above(ctx: Context, inp, unpruned: PrunedProduct) -> PrunedProduct:
    """NetAdapt's way to the budget set against the search's: the most accurate network up to budget / ratio, exported,
    fine-tuned as the searched one was, pruned down to fit the budget (its goal scaled by how far over it measured);
    the searched network is given the pruned one's recovery epochs, so that both are trained alike, and the more
    accurate of the two ships, measured side by side. Everything it made is under OUT/above."""
    from edgenas.compress.finetune import finetune
    from edgenas.compress.pays import fit_goal, pruned_from_above_pays
    from edgenas.compress.prune import OutOfReach, prune
    from edgenas.compress.surgery import macs_params
    from edgenas.search.export import export, searched_network

    s, c, budget, above = ctx.results["search"], ctx.cfg.compress, ctx.cfg.budget_ms, ctx.out / "above"
    b = _search_at(ctx, budget / c.prune_ratio, above / "search")
    if b.encoding == s.encoding:
        return replace(unpruned, why_not=f"not pruned: the search up to {budget / c.prune_ratio:.4g} ms (--prune-ratio "
                                         f"{c.prune_ratio:g}) found the network searched at the budget")
    net_b = searched_network(b, above / "search" / "best.json")
    onnx_b, info_b = export(net_b, above / "fp32")
    inp_b = replace(inp, searched=net_b, onnx_model=onnx_b, info=info_b, source=above / "fp32" / "model.onnx")
    if c.distill.epochs:
        inp_b = finetune(inp_b, above / "tuned", c.distill).as_prune_input(inp_b, above / "tuned" / "model.onnx")
    goal = fit_goal(b, budget) if b.measured_latency_ms is not None else s.search_budget_ms
    if goal >= b.predicted_latency_ms:
        return replace(unpruned, why_not=f"not pruned: the network searched up to {budget / c.prune_ratio:.4g} ms "
                                         f"already fits the budget as measured")
    cfg = c.prune_config(target_ms=goal)
    try:
        r = prune(inp_b, above / "pruned", cfg)
    except OutOfReach as e:
        warn(f"{e}; shipping the network searched at the budget")
        return replace(unpruned, why_not=f"pruning from above: {e}")
    at_model, at_fig, at_onnx = unpruned.model, unpruned.after, inp.onnx_model
    if cfg.distill.epochs:  # the searched network's share of the pruned one's recovery epochs: trained alike
        more = finetune(inp, ctx.out / "tuned-more", cfg.distill)
        at_model, at_onnx = str(ctx.out / "tuned-more"), more.onnx_model
        at_fig = replace(at_fig, val_accuracy=more.info.accuracy["fp32"])
    after = NetworkFigures(**r.after)
    pruned_onnx = (above / "pruned" / "model.onnx").read_bytes()
    # the network searched at the budget and the one searched above it may differ in resolution
    side = (_side_by_side(ctx, {"searched": (at_onnx, tuple(inp.info.input_shape)),
                                "pruned": (pruned_onnx, tuple(info_b.input_shape))}) if ctx.can_measure else None)
    v = pruned_from_above_pays(budget, *((side["searched"], side["pruned"]) if side else (at_fig.predicted_ms, after.predicted_ms)),
                               at_fig.val_accuracy, after.val_accuracy, side is not None)
    if not v.pays:
        warn(f"{v.why}; shipping the network searched at the budget")
        return replace(unpruned, model=at_model, after=at_fig, why_not=v.why, verdict=v, side_by_side_ms=side,
                       seconds=r.seconds)
    return PrunedProduct(str(above / "pruned"), True, unpruned.before, after, r.units, r.seconds, None, unpruned.tuned,
                         v, side, network=f"{b.encoding} (searched up to {budget / c.prune_ratio:.4g} ms, then pruned)",
                         searched_above=NetworkFigures(*macs_params(net_b.net), b.predicted_latency_ms,
                                                       b.measured_latency_ms, info_b.accuracy["fp32"]))


def _ms(v: float | None) -> str:
    return "not measured" if v is None else f"{v:.4f} ms"


def _side_by_side(ctx: Context, fp32_models: dict[str, tuple[bytes, tuple[int, ...]]]) -> dict[str, float]:
    """The fp32 models (each with its input shape) as they ship at the table's precision, measured side by side with
    the backend that ships."""
    from edgenas.measure.onnx_export import shipped_onnx
    from edgenas.measure.shipped import measure_side_by_side

    models = {n: shipped_onnx(m, shape, ctx.key.precision, ctx.target) for n, (m, shape) in fp32_models.items()}
    return measure_side_by_side(ctx.key, ctx.measure_config(ctx.backend), models,
                                {n: shape for n, (_, shape) in fp32_models.items()})


# ---- quantize, compile, bench ------------------------------------------------------------------------------------
def _quantize_facts(ctx: Context) -> dict:
    return {"backends": ctx.backends, "symmetric": _quantize_config(ctx).symmetric, "target": ctx.target.to_dict(),
            "measure": ctx.can_measure}


def _quantize_config(ctx: Context):
    """The build's quantize settings, symmetric where the target's runtime requires it."""
    return replace(ctx.cfg.quantize, symmetric=symmetric_for(ctx.target))


def _judge(ctx: Context, backend: str):
    from edgenas.accuracy import Evaluator

    return Evaluator.for_backend(backend, ctx.target, ctx.cfg.deploy.layout, ctx.cfg.deploy.tuning_db)


def _quantize(ctx: Context) -> QuantizedProduct:
    """int8 (as the table measured it), gated on the accuracy of what ships (the target's TVM library, or the ONNX
    model in ONNX Runtime or OpenVINO), or for an fp32 build the pruned model handed on as it is. Under `auto` the
    build never ships something slower or worse than it could have: fp32 when int8 fails the gate, and the
    precision and runtime in which this network itself, measured side by side, runs fastest (`_fastest`)."""
    from edgenas.compress.quantize import GateFailed, quantize

    c, pruned = ctx.cfg, ctx.results["prune"]
    fp32 = QuantizedProduct(pruned.model, "fp32", pruned.after.val_accuracy, None, None, "none (fp32 build)", None,
                            backend=ctx.backend)
    made = {"fp32": fp32}
    if ctx.precision == "int8":
        judge = _judge(ctx, ctx.backend)
        try:
            r = quantize(Path(pruned.model), ctx.out / "int8", _quantize_config(ctx), judge=judge)
        except GateFailed as e:
            if c.deploy.precision != "auto":
                raise
            warn(f"{e}; --precision auto ships fp32")
            made["fp32"] = replace(fp32, why=f"fp32: int8 failed the accuracy gate on {judge.runtime} ({e})")
        else:
            int8 = QuantizedProduct(str(ctx.out / "int8"), "int8", r.fp32_accuracy, r.int8_accuracy, r.drop_points,
                                    r.remedy, r.to_dict(), backend=ctx.backend)
            made = {"int8": int8, **(made if c.deploy.precision == "auto" else {})}
    if not ctx.can_measure or (len(made) == 1 and len(ctx.backends) == 1):
        return next(iter(made.values()))
    return _fastest(ctx, made)


def _fastest(ctx: Context, made: dict[str, QuantizedProduct]) -> QuantizedProduct:
    """The shipped network in each precision made, measured side by side with each runtime that may ship it: the
    precision stage probed other networks of the space, and a small or pruned network can turn the other way. int8
    ships on another runtime than the one whose gate it passed only when it passes the gate there too."""
    from edgenas.accuracy import bundle_split
    from edgenas.bundle import load_bundle
    from edgenas.tables.deployment import by_backend, last_word, measure_deployments

    models = {p: load_bundle(Path(q.model)) for p, q in made.items()}
    shape = models["fp32" if "fp32" in models else "int8"][1].input_shape
    measured = measure_deployments({b: ctx.key_for(b, ctx.precision) for b in ctx.backends}, ctx.measure_config,
                                   {p: data for p, (data, _) in models.items()}, shape)
    judged: dict[str, tuple[float, float]] = {}

    def refuses(d) -> str | None:
        q = made[d.precision]
        if d.precision == "fp32" or d.backend == q.backend:
            return None
        data, info = models["int8"]
        acc = _judge(ctx, d.backend).accuracy(data, info, bundle_split(info, q.model))
        judged[d.backend] = acc, round((q.fp32_accuracy - acc) * 100, 3)
        lost = judged[d.backend][1]
        return None if lost <= ctx.cfg.quantize.max_drop else f"int8 lost {lost:.2f} points on it, more than --max-drop {ctx.cfg.quantize.max_drop:g}"

    where = "here" if ctx.rpc is None else f"on the board '{ctx.rpc.key}'"
    pick, why = last_word(measured, refuses, "the shipped network", where)
    shipped = made[pick.precision]
    if pick.precision == "int8" and pick.backend != shipped.backend:
        acc, lost = judged[pick.backend]
        shipped = replace(shipped, int8_accuracy=acc, drop_points=lost, judged_by=pick.backend)
    int8 = made.get("int8")
    if int8 is not None and shipped is not int8 and pick.precision == "fp32":  # the gate's figures are kept either way
        shipped = replace(shipped, int8_accuracy=int8.int8_accuracy, drop_points=int8.drop_points, remedy=int8.remedy,
                          report=int8.report)
    why = f"{shipped.why}; then {why}" if shipped.why else why  # int8 failed its gate: both are said
    return replace(shipped, backend=pick.backend, why=why, measured_ms=by_backend(measured))


def _compile_facts(ctx: Context) -> dict:
    return {"target": ctx.target.to_dict(), "measure": ctx.can_measure}


def _compile(ctx: Context) -> CompiledProduct:
    """The artifact for the runtime that ships: TVM's library compiled for the target, or the ONNX model that ONNX
    Runtime or OpenVINO runs."""
    from edgenas.artifact.package import package, package_onnx

    c, q = ctx.cfg, ctx.results["quantize"]
    if q.backend != "tvm":
        art = package_onnx(Path(q.model), ctx.target, ctx.out / "artifact", q.backend, ctx.measure_config(q.backend),
                           ctx.threads)
        record = CompileFacts(q.backend)
    else:
        art = package(Path(q.model), ctx.target, ctx.out / "artifact", c.compile_config(ctx.rpc), ctx.measure_config("tvm"),
                      ctx.threads, ctx.rpc)
        m = art.meta.compile
        record = CompileFacts("tvm", m.seconds, m.tuning, m.ops, m.kernel_layout)
    files = {name: (art.path / name).stat().st_size for name in art.meta.files}
    return CompiledProduct(str(art.path), record, files, art.meta.latency.measured, art.meta.accuracy.get("artifact"))


def _bench_facts(ctx: Context) -> dict:
    return {"measure": ctx.can_measure}


def _bench(ctx: Context) -> BenchProduct:
    """The budget is checked on the artifact, with the runtime that ships it, and with the table's statistic, so that
    predicted and measured compare. The artifact was measured when it was packaged; it is measured again only when
    this stage asks for another measurement (--repeat), or when the first reading is over the budget."""
    from edgenas.artifact.artifact import load_artifact
    from edgenas.artifact.runtime import bench

    compiled, runtime = ctx.results["compile"], ctx.results["quantize"].backend
    art = load_artifact(Path(compiled.artifact))
    cfg = ctx.measure_config(runtime)

    def measure() -> dict:
        return bench(art, cfg, ctx.threads, ctx.rpc)

    budget = ctx.cfg.budget_ms
    if not ctx.can_measure:
        return BenchProduct({}, runtime, STATISTIC, None, budget, None)
    how, m = cfg.to_dict(), compiled.measured
    same = m is not None and m.get("threads") == ctx.threads and {k: m["how"].get(k) for k in how} == how
    checked = m if same else measure()
    taken = readings_against(budget, measure, lambda r: r[STATISTIC], first=checked, is_noisy=noisy)
    measured = min(r[STATISTIC] for r in taken)
    if len(taken) > 1 and measured <= budget:
        warn(f"{art.path}: the artifact first read {checked[STATISTIC]:.4f} ms ({STATISTIC}), over the {budget:g} ms budget, "
             f"and {measured:.4f} ms when measured again ({len(taken)} readings in all, recorded)")
    return BenchProduct({runtime: checked}, runtime, STATISTIC, measured, budget, measured <= budget,
                        taken[1] if len(taken) > 1 else None, taken[2:])


#: what each stage follows and reads: a product depends on these, and on the fingerprints of the stages it follows
#: (the quantize stage on the precision stage's choice through the prune stage it follows, and so on down)
STAGES = (
    Stage("precision", (), ("deploy",), _precision_facts, _precision, PrecisionProduct),
    Stage("profile", ("precision",), (), _profile_facts, _profile, TableProduct),
    Stage("train", (), ("data", "train"), _train_facts, _train, SupernetProduct),
    Stage("search", ("profile", "train"), ("budget_ms", "search", "deploy"), _search_facts, _search, SearchReport, ("search",)),
    Stage("prune", ("search",), ("budget_ms", "compress", "deploy"), _prune_facts, _prune, PrunedProduct,
          ("fp32", "tuned", "pruned", "above", "tuned-more")),
    Stage("quantize", ("prune",), ("quantize", "deploy"), _quantize_facts, _quantize, QuantizedProduct, ("int8",)),
    Stage("compile", ("quantize",), ("compile", "deploy"), _compile_facts, _compile, CompiledProduct, ("artifact",)),
    Stage("bench", ("compile",), ("budget_ms", "deploy"), _bench_facts, _bench, BenchProduct),
)
