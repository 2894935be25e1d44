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
from dataclasses import asdict, dataclass
from pathlib import Path

from edgenas.data import load_dataset, split as split_data
from edgenas.errors import BadInput, Interrupted, warn
from edgenas.jsonio import atomic_write_bytes, atomic_write_json, exclusive_lock, read_json
from edgenas.measure.backends import make_backend
from edgenas.measure.onnx_export import to_onnx
from edgenas.measure.timing import MeasureConfig
from edgenas.plots import new_figure, save_figure
from edgenas.progress import bar
from edgenas.search.accuracy_predictor import AccuracyPredictor
from edgenas.search.evolution import EvolutionConfig, EvolutionFinder, check_budget
from edgenas.search.latency_predictor import TableLatencyPredictor
from edgenas.space import Arch, SearchSpace
from edgenas.space.blocks import layer_params
from edgenas.supernet.evaluate import SubnetEvaluator
from edgenas.supernet.train import load_supernet
from edgenas.tables.latency_table import STATISTIC, LatencyTable, identity, now, table_path
from edgenas.targets import Target

SUBNET_SAMPLES = "subnet_accuracy.json"


@dataclass(frozen=True)
class SearchReport:
    budget_ms: float
    predicted_latency_ms: float
    measured_latency_ms: float | None
    within_budget: bool | None
    val_accuracy: float
    predicted_accuracy: float
    params: int
    evaluated: int
    seconds: float
    arch: dict
    encoding: str
    fastest_ms: float
    predictor: dict
    table: str
    supernet: str
    out_dir: str

    def to_dict(self) -> dict:
        return asdict(self)


def params(space: SearchSpace, arch: Arch) -> int:
    return sum(layer_params(spec) for spec in space.layers(arch))


def run_split(run: dict, run_dir: Path):
    """The same training/validation split the supernet was trained on; refuses data that changed since."""
    d, cfg = run["data"], run["config"]
    s = split_data(load_dataset(d["spec"], d.get("resize")), cfg["val_fraction"], cfg["seed"])
    if s.fingerprint != d["fingerprint"]:
        raise BadInput(f"{run_dir}: the data at '{d['spec']}' changed since this supernet was trained; train again")
    return s


def subnet_accuracies(run_dir: Path, evaluator: SubnetEvaluator, space: SearchSpace, n: int, seed: int, epoch: int) -> dict:
    """Validation accuracy of `n` random sub-networks, cached in the run directory (resumable)."""
    path = Path(run_dir) / SUBNET_SAMPLES
    key = {"checkpoint_epoch": epoch, "seed": seed}
    cache = read_json(path) if path.exists() else {}
    samples = cache.get("samples", {}) if cache.get("key") == key else {}
    rng = random.Random(seed)
    archs = [space.largest(), space.smallest()]
    while len({a.encoding for a in archs}) < n:
        archs.append(space.sample(rng))
    archs = list({a.encoding: a for a in archs}.values())
    todo = [a for a in archs if a.encoding not in samples]
    try:
        with bar(len(archs), "evaluate sub-networks", initial=len(archs) - len(todo), unit="net") as progress:
            for a in todo:
                samples[a.encoding] = {"arch": a.to_dict(), "val_accuracy": evaluator(a)}
                atomic_write_json(path, {"key": key, "samples": samples})
                progress.update()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(samples)} evaluated sub-networks are kept in {path}; run again to go on") from None
    return {a.encoding: (a, samples[a.encoding]["val_accuracy"]) for a in archs}


def search(run_dir: Path, target: Target, backend: str, budget_ms: float, tables_dir: Path, out_dir: Path, *,
           config: EvolutionConfig = EvolutionConfig(), subnets: int = 200, max_params: int | None = None,
           threads: int | None = None, measure: bool = True) -> SearchReport:
    start = time.perf_counter()
    supernet, run = load_supernet(run_dir)
    space = supernet.space
    threads = threads or target.thread_count()
    path = table_path(tables_dir, target, backend, space)
    if not path.exists():
        raise BadInput(f"no latency table at {path}; run `edgenas profile --target {target.name} --backend {backend}` first")
    table = LatencyTable.open(path, identity(target, backend, space, threads), target)
    if not table.correction:
        warn(f"{path} has no correction yet: predictions are raw sums of blocks; run `edgenas validate` to fit one")
    latency = TableLatencyPredictor(table, space)
    fastest_ms, fastest = latency.fastest()
    check_budget(budget_ms, fastest_ms, fastest)  # before any costly step

    split = run_split(run, Path(run_dir))
    evaluator = SubnetEvaluator(supernet, split)
    samples = list(subnet_accuracies(Path(run_dir), evaluator, space, subnets, config.seed, run["epochs_done"]).values())
    cut = int(len(samples) * 0.8)
    predictor = AccuracyPredictor(space).fit([a for a, _ in samples[:cut]], [acc for _, acc in samples[:cut]], config.seed)
    predictor_metrics = {**predictor.evaluate([a for a, _ in samples[cut:]], [acc for _, acc in samples[cut:]]),
                         "trained_on": cut}
    predictor.fit([a for a, _ in samples], [acc for _, acc in samples], config.seed)  # all of them for the search

    limit = latency
    if max_params is not None:
        if params(space, fastest) > max_params:
            raise BadInput(f"--max-params {max_params}: the fastest network alone has {params(space, fastest)} parameters")
        limit = lambda a: latency(a) if params(space, a) <= max_params else float("inf")  # noqa: E731
    result = EvolutionFinder(space, limit, predictor, (fastest_ms, fastest), config).run(budget_ms)
    best = result.best.arch
    val_acc = evaluator(best)
    measured = None
    if measure:
        net = evaluator.network(best)
        shape = (1, space.in_channels, best.resolution, best.resolution)
        b = make_backend(backend, target, MeasureConfig.for_backend(backend), threads)
        try:
            measured = getattr(b.measure(to_onnx(net, shape), shape), STATISTIC)
        finally:
            b.close()
        if measured > budget_ms:
            warn(f"the best network measured {measured:.4f} ms on {target.name}/{backend}, over the {budget_ms:g} ms budget "
                 f"(predicted {result.best.latency_ms:.4f} ms)")
    report = SearchReport(
        budget_ms, result.best.latency_ms, measured, None if measured is None else measured <= budget_ms, val_acc,
        result.best.accuracy, params(space, best), result.evaluated, round(time.perf_counter() - start, 2), best.to_dict(),
        best.encoding, fastest_ms, predictor_metrics, str(path), str(run_dir), str(out_dir),
    )
    _write_outputs(Path(out_dir), report, result, config, table, run)
    return report


def _write_outputs(out: Path, report: SearchReport, result, config: EvolutionConfig, table: LatencyTable, run: dict) -> None:
    with exclusive_lock(out / "best.json"):
        atomic_write_json(out / "best.json", {
            "schema": "edgenas.search-result", "schema_version": 1, **report.to_dict(), "evolution": config.to_dict(),
            "table_identity": table.meta["identity"], "table_correction": table.correction,
            "data": run["data"], "created": now(),
        })
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["predicted_latency_ms", "predicted_accuracy", "arch"])
        for c in result.pareto:
            w.writerow([f"{c.latency_ms:.6f}", f"{c.accuracy:.6f}", c.arch.encoding])
        atomic_write_bytes(out / "pareto.csv", buf.getvalue().encode())
        log = [f"{now()} search budget {report.budget_ms} ms, evolution {json.dumps(config.to_dict())}",
               f"accuracy predictor on held-out sub-networks: {json.dumps(report.predictor)}"]
        log += [f"generation {i + 1}: best predicted accuracy {acc:.5f}" for i, acc in enumerate(result.history)]
        log.append(f"best {report.encoding}: predicted {report.predicted_latency_ms:.4f} ms, measured "
                   f"{report.measured_latency_ms} ms, val accuracy {report.val_accuracy:.4f}, {report.evaluated} candidates")
        atomic_write_bytes(out / "search.log", ("\n".join(log) + "\n").encode())
        _plot(out / "pareto.png", result, report)


def _plot(path: Path, result, report: SearchReport) -> None:
    fig, ax = new_figure(figsize=(6, 4.2), dpi=120)
    ax.plot([c.latency_ms for c in result.pareto], [c.accuracy for c in result.pareto], "o-", ms=3, label="Pareto front (predicted)")
    ax.axvline(report.budget_ms, color="tab:red", ls="--", label=f"budget {report.budget_ms:g} ms")
    ax.scatter([report.predicted_latency_ms], [report.predicted_accuracy], color="tab:green", zorder=3, label="chosen (predicted)")
    if report.measured_latency_ms is not None:
        ax.scatter([report.measured_latency_ms], [report.val_accuracy], marker="x", color="k", zorder=3, label="chosen (measured)")
    ax.set(xlabel="latency (ms)", ylabel="validation accuracy", title="accuracy–latency trade-off")
    ax.legend(fontsize=7)
    save_figure(fig, path)
