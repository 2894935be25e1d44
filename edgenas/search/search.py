"""`edgenas search`: the most accurate network of the space within a latency budget on a target.

Latency comes from the target's table, corrected as `validate` fitted it; accuracy from a predictor
trained on sub-networks evaluated with supernet weights. The winner is then measured for real:
its accuracy on the validation split and its latency end to end on the backend.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from pathlib import Path

from edgenas.data import DataRecord, load_split
from edgenas.errors import BadInput, Interrupted, warn
from edgenas.jsonio import atomic_write_bytes, atomic_write_json, exclusive_lock, now, read_json
from edgenas.measure.onnx_export import to_onnx
from edgenas.measure.shipped import ShippedMeter
from edgenas.measure.timing import MeasureConfig
from edgenas.plots import new_figure, save_figure
from edgenas.progress import bar
from edgenas.search.accuracy_predictor import AccuracyPredictor
from edgenas.search.evolution import EvolutionConfig, EvolutionFinder, check_budget
from edgenas.search.report import SearchReport
from edgenas.space import Arch, SearchSpace
from edgenas.space.blocks import layer_params
from edgenas.supernet.evaluate import SubnetEvaluator
from edgenas.supernet.threads import AdaptivePool
from edgenas.supernet.train import load_supernet
from edgenas.supernet.train_config import near_chance
from edgenas.tables.key import TableKey
from edgenas.tables.latency_model import LatencyModel
from edgenas.tables.latency_table import LatencyTable
from edgenas.tables.ready import ready_table

SUBNET_SAMPLES = "subnet_accuracy.json"
#: the held-out Kendall's tau under which the accuracy predictor is said to rank networks on noise
RANKS = 0.5
RESULT_SCHEMA, RESULT_SCHEMA_VERSION = "edgenas.search-result", 1


def params(space: SearchSpace, arch: Arch) -> int:
    return sum(layer_params(spec) for spec in space.layers(arch))


def run_data(run: dict, run_dir: Path) -> DataRecord:
    """The data record of a supernet run (its config's `val_fraction` wins: runs before the record held it)."""
    return DataRecord.from_dict({**run["data"], "val_fraction": run["config"]["val_fraction"]}, f"{run_dir}/run.json")


def run_split(run: dict, run_dir: Path):
    """The same training/validation split the supernet was trained on; refuses data that changed since."""
    return load_split(run_data(run, run_dir), f"{run_dir}/run.json")


def subnet_accuracies(run_dir: Path, evaluator: SubnetEvaluator, space: SearchSpace, n: int, seed: int, epoch: int) -> dict:
    """Validation accuracy of `n` random sub-networks spread over sizes, cached in the run directory (resumable)."""
    path = Path(run_dir) / SUBNET_SAMPLES
    key = {"checkpoint_epoch": epoch, "seed": seed}
    samples, again = {}, "evaluating the sub-networks again"
    if path.exists():
        try:
            cache = read_json(path, remedy=again)
            samples = cache.get("samples", {}) if cache.get("key") == key else {}
            if not (isinstance(samples, dict) and all(isinstance(s, dict) and isinstance(s.get("val_accuracy"), (int, float))
                                                      for s in samples.values())):
                raise BadInput(f"{path}: damaged (malformed 'samples'); {again}")
        except BadInput as e:  # a cache: a damaged one costs only the time to fill it again
            warn(str(e))
            samples = {}
    rng = random.Random(seed)
    archs = [space.largest(), space.smallest()]
    while len({a.encoding for a in archs}) < n:  # half uniform, half leaning toward either end by a random amount
        archs.append(space.sample(rng, lean=rng.uniform(-1, 1) if len(archs) % 2 else 0.0))
    archs = list({a.encoding: a for a in archs}.values())
    todo = [a for a in archs if a.encoding not in samples]
    try:
        with bar(len(archs), "evaluate sub-networks", initial=len(archs) - len(todo), unit="net") as progress, \
                AdaptivePool() as pool:
            for a in todo:
                pool.adapt()
                samples[a.encoding] = {"arch": a.to_dict(), "val_accuracy": evaluator(a)}
                atomic_write_json(path, {"key": key, "samples": samples})
                progress.update()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(samples)} evaluated sub-networks are kept in {path}; run again to go on") from None
    return {a.encoding: (a, samples[a.encoding]["val_accuracy"]) for a in archs}


def run_space(run_dir: Path) -> SearchSpace:
    """The search space a supernet run was trained on, from its run record (no weights loaded)."""
    from edgenas.space.space import space_from_dict
    from edgenas.supernet.train import RUN_FILE, load_run

    return space_from_dict(load_run(Path(run_dir))["space"], source=str(Path(run_dir) / RUN_FILE))


class Searcher:
    """The budget-independent part of a search, set up once: table, supernet, split and accuracy predictor.

    Opening it checks the table (measuring it first when this device has none), so a hopeless budget fails
    before the costly `fit_accuracy` evaluates sub-networks. The benchmark runs many budgets on one Searcher.
    """

    def __init__(self, run_dir: Path, key: TableKey, tables_dir: Path, margin_pct: float | None = None,
                 cfg: MeasureConfig | None = None):
        if margin_pct is not None and margin_pct < 0:
            raise BadInput(f"--margin-pct must be zero or positive, not {margin_pct}")
        self.run_dir, self.key, self.cfg = Path(run_dir), key, cfg or MeasureConfig.for_backend(key.backend)
        self.target, self.backend, self.threads = key.target, key.backend, key.threads
        self.supernet, self.run = load_supernet(run_dir)
        self.space = space = self.supernet.space
        if space.hash != key.space.hash:
            raise BadInput(f"{run_dir}: trained on space '{space.name}', not the table's '{key.space.name}'")
        self.table = ready_table(key, tables_dir, cfg)
        self.path = path = self.table.path
        overrun = self.table.correction.overrun_p95_pct
        if margin_pct is None and overrun is None:
            warn(f"{path}: its validation predates the guard band; run `edgenas validate` again (it reuses its measurements)")
        self.margin_pct = max(0.0, overrun or 0.0) if margin_pct is None else margin_pct
        self.latency = LatencyModel(self.table, space)
        self.fastest_ms, self.fastest = self.latency.fastest()
        self.evaluator = self.predictor = self.predictor_metrics = None
        self._meter, self._exported = ShippedMeter(key, self.cfg), {}  # encoding -> fp32 ONNX

    def search_budget(self, budget_ms: float) -> float:
        """The budget the evolution works to: the user's, less the table's 95th-percentile overrun.

        Winners sit at the budget's edge, so without a guard band about half of them would measure over it.
        """
        check_budget(budget_ms, self.fastest_ms, self.fastest)
        guarded = budget_ms / (1 + self.margin_pct / 100)
        if guarded < self.fastest_ms:
            warn(f"--budget-ms {budget_ms:g} is within the table's {self.margin_pct:.1f}% error margin of the fastest network "
                 f"({self.fastest_ms:.4f} ms): searching up to {self.fastest_ms:.4f} ms, the measured latency may exceed the budget")
            return self.fastest_ms
        return guarded

    def fit_accuracy(self, subnets: int = 200, seed: int = 0) -> dict:
        """Evaluates `subnets` sub-networks (cached) and fits the predictor; returns its held-out metrics."""
        self.evaluator = SubnetEvaluator(self.supernet, run_split(self.run, self.run_dir))
        samples = list(subnet_accuracies(self.run_dir, self.evaluator, self.space, subnets, seed, self.run["epochs_done"]).values())
        archs, accs = [a for a, _ in samples], [acc for _, acc in samples]
        cut = int(len(samples) * 0.8)
        held_out = AccuracyPredictor(self.space).fit(archs[:cut], accs[:cut], seed).evaluate(archs[cut:], accs[cut:])
        self.predictor_metrics = {**held_out, "trained_on": cut}
        self.predictor = AccuracyPredictor(self.space).fit(archs, accs, seed)  # all of them for the search
        return self.predictor_metrics

    def on_noise(self) -> str | None:
        """One line when the supernet cannot rank its networks, so that the search would choose on noise: its largest
        network near chance (under a quarter of the way from chance to 100%), or the accuracy predictor ordering
        held-out sub-networks at Kendall's tau under `RANKS`; None when it can."""
        chance = 1 / self.space.num_classes
        largest = self.evaluator(self.space.largest())
        tau = (self.predictor_metrics or {}).get("kendall_tau")
        why = ([f"its largest network scores {largest:.1%} on validation, near chance ({chance:.1%})"]
               if near_chance(largest, self.space.num_classes) else [])
        why += [f"the accuracy predictor orders held-out sub-networks at Kendall's tau {tau:.2f}"] if tau is not None and tau < RANKS else []
        if not why:
            return None
        return (f"the supernet cannot rank its networks: {' and '.join(why)}; the search chooses on noise. Train it longer "
                f"(--epochs, or --epochs auto), on more images (--limit 0, or more data), or with more sub-networks scored "
                f"(--subnets)")

    def finder(self, config: EvolutionConfig, max_params: int | None = None) -> EvolutionFinder:
        limit = self.latency
        if max_params is not None:
            space, fastest = self.space, self.fastest
            if params(space, fastest) > max_params:
                raise BadInput(f"--max-params {max_params}: the fastest network alone has {params(space, fastest)} parameters")
            limit = lambda a: self.latency(a) if params(space, a) <= max_params else float("inf")  # noqa: E731
        return EvolutionFinder(self.space, limit, self.predictor, (self.fastest_ms, self.fastest), config)

    def measure_latency(self, arch: Arch) -> float:
        """End-to-end latency of the extracted sub-network as it would ship, as the table measures it; a network read
        again is timed again, not built again (`close` ends that)."""
        shape = (1, self.space.in_channels, arch.resolution, arch.resolution)
        if arch.encoding not in self._exported:
            self._exported[arch.encoding] = to_onnx(self.evaluator.network(arch), shape)
        return self._meter(self._exported[arch.encoding], shape)

    def close(self) -> None:
        self._meter.close()
        self._exported = {}


def search(run_dir: Path, key: TableKey, budget_ms: float, tables_dir: Path, out_dir: Path, *,
           config: EvolutionConfig = EvolutionConfig(), subnets: int = 200, max_params: int | None = None,
           measure: bool = True, margin_pct: float | None = None, cfg: MeasureConfig | None = None) -> SearchReport:
    """Measured (`measure`), the search fits by measurement (`search.fit`): the evolution searches up to the budget
    plus the guard band, and the most accurate network of its front that measures within the budget wins. Not
    measured, it searches to the budget less the guard band and trusts the table."""
    start = time.perf_counter()
    target = key.target
    s = Searcher(run_dir, key, tables_dir, margin_pct, cfg)
    guarded = s.search_budget(budget_ms)  # before any costly step
    search_budget = budget_ms * (1 + s.margin_pct / 100) if measure else guarded
    s.fit_accuracy(subnets, config.seed)
    noise = s.on_noise()
    if noise:
        warn(noise)
    finder = s.finder(config, max_params)
    result = finder.search(search_budget)
    chosen, fit, readings = result.best, None, []
    if measure:
        from edgenas.search.fit import HEADROOM, fit_to_budget

        # the front's part near the budget: a network predicted more than two bands under the line the fit holds it
        # to (the budget less its headroom) is not the answer
        front = ([c for c in result.pareto if c.latency_ms >= guarded * (1 - HEADROOM) / (1 + s.margin_pct / 100)]
                 or result.pareto[-1:])
        try:
            fit = fit_to_budget(front, budget_ms, s.measure_latency)
        finally:
            s.close()
        chosen = front[fit.index]
        readings = list(next(t.readings_ms for t in fit.tried if t.encoding == chosen.arch.encoding))
        if not fit.fits:
            warn(f"{fit.why} on {target.name}/{key.name} (predicted {chosen.latency_ms:.4f} ms)")
    best = chosen.arch
    val_acc = s.evaluator(best)
    measured = min(readings, default=None)
    report = SearchReport(
        budget_ms, search_budget, s.margin_pct, chosen.latency_ms, measured,
        None if fit is None else fit.fits, val_acc, chosen.accuracy, params(s.space, best),
        result.evaluated, result.unique, round(result.seconds, 3), round(time.perf_counter() - start, 2), best.to_dict(),
        best.encoding, s.fastest_ms, s.predictor_metrics, str(s.path), str(Path(run_dir).resolve()), str(out_dir),
        key.precision, readings, fit, noise,
    )
    _write_outputs(Path(out_dir), report, result, config, s.table, s.run)
    return report


def _write_outputs(out: Path, report: SearchReport, result, config: EvolutionConfig, table: LatencyTable, run: dict) -> None:
    with exclusive_lock(out / "best.json"):
        atomic_write_json(out / "best.json", {
            "schema": RESULT_SCHEMA, "schema_version": RESULT_SCHEMA_VERSION, **report.to_dict(), "evolution": config.to_dict(),
            "table_identity": table.meta["identity"], "table_correction": table.correction.to_dict(),
            "data": run["data"], "created": now(),
        })
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["predicted_latency_ms", "predicted_accuracy", "arch"])
        for c in result.pareto:
            w.writerow([f"{c.latency_ms:.6f}", f"{c.accuracy:.6f}", c.arch.encoding])
        atomic_write_bytes(out / "pareto.csv", buf.getvalue().encode())
        log = [f"{now()} budget {report.budget_ms} ms, searched to {report.search_budget_ms:.5f} ms (guard band "
               f"{report.margin_pct:.2f}%), evolution {json.dumps(config.to_dict())}",
               f"accuracy predictor on held-out sub-networks: {json.dumps(report.predictor)}"]
        log += [f"generation {i + 1}: best predicted accuracy {acc:.5f}" for i, acc in enumerate(result.history)]
        log.append(f"best {report.encoding}: predicted {report.predicted_latency_ms:.4f} ms, measured "
                   f"{report.measured_latency_ms} ms, val accuracy {report.val_accuracy:.4f}, {report.evaluated} candidates "
                   f"({report.unique} distinct) in {report.search_seconds:.2f} s")
        if report.fit is not None:
            log += [f"measured {t.encoding}: predicted {t.predicted_ms:.4f} ms, read {', '.join(f'{v:.4f}' for v in t.readings_ms)} ms"
                    for t in report.fit.tried] + [f"chosen: {report.fit.why}"]
        atomic_write_bytes(out / "search.log", ("\n".join(log) + "\n").encode())
        _plot(out / "pareto.png", result, report)


def _plot(path: Path, result, report: SearchReport) -> None:
    fig, ax = new_figure(figsize=(6, 4.2), dpi=120)
    ax.plot([c.latency_ms for c in result.pareto], [c.accuracy for c in result.pareto], "o-", ms=3, label="Pareto front (predicted)")
    ax.axvline(report.budget_ms, color="tab:red", ls="--", label=f"budget {report.budget_ms:g} ms")
    if report.search_budget_ms != report.budget_ms:
        ax.axvline(report.search_budget_ms, color="tab:red", ls=":", lw=1, label=f"searched to ({report.margin_pct:.1f}% band)")
    if report.fit is not None:
        tried = {t.encoding: t for t in report.fit.tried}
        ax.scatter([min(t.readings_ms) for t in tried.values()], [t.predicted_accuracy for t in tried.values()],
                   marker="+", color="0.3", zorder=3, label="measured on the way (predicted accuracy)")
    ax.scatter([report.predicted_latency_ms], [report.predicted_accuracy], color="tab:green", zorder=3, label="chosen (predicted)")
    if report.measured_latency_ms is not None:
        ax.scatter([report.measured_latency_ms], [report.val_accuracy], marker="x", color="k", zorder=3, label="chosen (measured)")
    ax.set(xlabel="latency (ms)", ylabel="validation accuracy", title="accuracy–latency trade-off")
    ax.legend(fontsize=7)
    save_figure(fig, path)
