"""The search's parts on a real ONNX Runtime table of the tiny space: latency predictor, evolution, accuracy predictor."""

import itertools
import random
import time

import numpy as np
import pytest

from conftest import FAST, TINY_SPACE, run_cli, shipped_table, table_file
from edgenas.errors import BadInput
from edgenas.search.accuracy_predictor import AccuracyPredictor, arch_features
from edgenas.search.evolution import EvolutionConfig, EvolutionFinder, NoNetworkFits
from edgenas.space import Arch, get_space
from edgenas.space.blocks import Network
from edgenas.tables.correction import apply_correction
from edgenas.tables.latency_model import LatencyModel
from edgenas.measure.timing import STATISTIC

SPACE = get_space(TINY_SPACE)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from edgenas.tables.latency_table import LatencyTable

    tables = tmp_path_factory.mktemp("tables")
    common = ("--space", TINY_SPACE, "--backend", "ort", "--tables", tables, *FAST)
    run_cli("profile", *common, check=0)
    run_cli("validate", *common, "--samples", 12, check=0)  # fits a correction, so predictions use it
    table = LatencyTable.load(table_file(tables))
    assert table.correction
    return LatencyModel(table, SPACE)


def all_archs(space):
    stage_options = []
    for stage in space.stages:
        opts = []
        for w in stage.widths:
            for d in stage.depths:
                for blocks in itertools.product(itertools.product(space.kernel_sizes, space.expand_ratios), repeat=d):
                    opts.append((w, blocks))
        stage_options.append(opts)
    for res in space.resolutions:
        for combo in itertools.product(*stage_options):
            yield Arch(res, tuple(w for w, _ in combo), tuple(b for _, b in combo))


def test_prediction_matches_table_and_fastest_is_exact(predictor):
    archs = list(all_archs(SPACE))
    lat = [predictor(a) for a in archs]
    for a, ms in random.Random(0).sample(list(zip(archs, lat)), 20):
        layers = SPACE.layers(a)  # the table's entries by their keys, not the predictor's re-indexed copy
        raw = sum(predictor.table.entries[layer.key][STATISTIC] for layer in layers)
        assert ms == pytest.approx(apply_correction(predictor.table.correction, raw, len(layers)))
    fastest_ms, fastest = predictor.fastest()
    assert fastest_ms == pytest.approx(min(lat)) and predictor(fastest) == pytest.approx(fastest_ms)


def params(arch):
    return sum(p.numel() for p in Network(SPACE, arch).parameters())


def proxy_accuracy(archs):
    """A stand-in that prefers bigger networks, so the search has a real trade-off to make."""
    return [np.log(params(a)) for a in archs]


def finder(predictor, seed=0, generations=30):
    return EvolutionFinder(SPACE, predictor, proxy_accuracy, predictor.fastest(),
                           EvolutionConfig(population=20, generations=generations, seed=seed))


def test_search_respects_budget_and_beats_the_fastest(predictor):
    lat = sorted(predictor(a) for a in all_archs(SPACE))
    budget = lat[len(lat) // 2]
    result = finder(predictor).run(budget)
    assert result.best.latency_ms <= budget
    assert all(c.latency_ms <= budget for c in result.pareto)
    assert result.best.accuracy > proxy_accuracy([predictor.fastest()[1]])[0]
    assert result.evaluated == 20 + 30 * (20 - 5) and 20 <= result.unique <= result.evaluated
    assert result.history == sorted(result.history)  # elitism: the best never gets worse


def test_evolution_beats_random_search_at_equal_cost():
    """On the digits space and the shipped (measured, committed) host table, so the outcome does not hang on
    this machine's timing; the tiny space is small enough for random search to stumble on its optimum."""
    from edgenas.space.blocks import layer_params
    from edgenas.tables.latency_table import LatencyTable

    space = get_space("digits")
    latency = LatencyModel(LatencyTable.load(shipped_table("ort")), space)
    log_params = lambda archs: [np.log(sum(layer_params(u) for u in space.layers(a))) for a in archs]  # noqa: E731
    lo, hi = latency.fastest()[0], latency(space.largest())
    for seed, q in enumerate((0.25, 0.5, 0.75)):
        budget = lo + q * (hi - lo)
        make = lambda: EvolutionFinder(space, latency, log_params, latency.fastest(),  # noqa: E731
                                       EvolutionConfig(population=20, generations=30, seed=seed))
        evo = make().run(budget)
        rnd = make().random_search(budget, evo.evaluated)
        assert rnd.evaluated == evo.evaluated and rnd.best.latency_ms <= budget
        assert all(c.latency_ms <= budget for c in rnd.pareto)
        assert evo.best.accuracy > rnd.best.accuracy


def test_same_seed_same_result(predictor):
    budget = predictor.fastest()[0] * 1.3
    a, b = finder(predictor, seed=3).run(budget), finder(predictor, seed=3).run(budget)
    assert a.best.arch == b.best.arch and a.history == b.history


def test_impossible_budget_fails_fast_with_fastest_latency(predictor):
    fastest_ms = predictor.fastest()[0]
    start = time.perf_counter()
    with pytest.raises(NoNetworkFits, match=f"{fastest_ms:.4f} ms") as e:
        finder(predictor, generations=10_000).run(fastest_ms * 0.5)
    assert time.perf_counter() - start < 1 and e.value.fastest_ms == pytest.approx(fastest_ms)
    for bad in (0, -1, float("nan")):
        with pytest.raises(BadInput, match="positive"):
            finder(predictor).run(bad)


def test_budget_at_the_fastest_latency_finds_it(predictor):
    fastest_ms, fastest = predictor.fastest()
    result = finder(predictor, generations=5).run(fastest_ms)
    assert result.best.latency_ms <= fastest_ms + 1e-12


def test_accuracy_predictor_learns_a_ranking():
    space = get_space("digits")
    rng = random.Random(0)
    archs = list({a.encoding: a for a in (space.sample(rng) for _ in range(400))}.values())
    feats = arch_features(space, archs)
    assert feats.shape[0] == len(archs) and set(np.unique(feats)) <= {0.0, 1.0}
    # a target with structure: deeper, wider, larger-kernel networks score higher
    target = [0.9 + 0.01 * sum(a.depths) + 0.0005 * sum(a.widths) + 0.002 * sum(k for s in a.blocks for k, _ in s) for a in archs]
    model = AccuracyPredictor(space).fit(archs[:300], target[:300])
    metrics = model.evaluate(archs[300:], target[300:])
    assert metrics["kendall_tau"] > 0.8 and metrics["rmse"] < 0.01


def test_correction_never_has_a_non_positive_slope():
    from edgenas.tables.correction import fit_correction

    raw, units = [1.0, 2.0, 3.0, 4.0], [3, 4, 5, 6]
    measured = [4.0, 3.0, 2.0, 1.5]  # noise that a free fit would read as "slower blocks, faster network"
    c = fit_correction(raw, units, measured)
    assert c.model == "proportional" and c.coef[1] > 0
    assert apply_correction(c, 2.0, 4) > apply_correction(c, 1.0, 4)
    assert fit_correction(raw, units, [2.1, 4.0, 6.2, 7.9]).model == "linear"


def test_a_correction_predicting_no_latency_for_the_fastest_network_falls_back_to_proportional():
    """A linear fit on networks of one size range can extrapolate below zero for the space's fastest network; the
    search's budget check would then start from a negative latency."""
    from edgenas.tables.latency_table import LatencyTable
    from edgenas.tables.validate import _fit

    space = get_space("digits")
    table = LatencyTable.load(shipped_table())
    table.correction = None  # raw sums
    raw_model = LatencyModel(table, space)
    floor = raw_model.raw_ms(raw_model.fastest()[1])
    rng = random.Random(0)
    archs = [a for a in (space.sample(rng) for _ in range(200)) if raw_model.raw_ms(a) > 2 * floor][:8]
    raw = np.array([raw_model.raw_ms(a) for a in archs])
    units = np.array([len(space.layers(a)) for a in archs])
    assert len(archs) == 8

    # measured = raw less more than the fastest network's whole sum: exactly linear, intercept below -floor
    c = _fit(table, space, raw, units, raw - 1.5 * floor)
    assert c.model == "proportional" and c.rejected["fastest_ms"] < 0 and c.coef[1] > 0
    table.correction = c
    assert LatencyModel(table, space).fastest()[0] > 0
    # a fit that stays positive is kept as it is
    kept = _fit(table, space, raw, units, 0.8 * raw + 0.01)
    assert kept.model == "linear" and kept.rejected is None


def test_the_baseline_strategies_pick_what_a_user_would():
    """`--strategy random` scores as many networks as the evolution would; `uniform` takes the largest network with
    the same choices in every stage that fits (on the digits space and the shipped host table, as above)."""
    from edgenas.search.evolution import uniform_archs
    from edgenas.space.blocks import layer_params
    from edgenas.tables.latency_table import LatencyTable

    space = get_space("digits")
    latency = LatencyModel(LatencyTable.load(shipped_table("ort")), space)
    uniform = uniform_archs(space)
    assert len(uniform) == len(set(uniform)) == 3 * 3 * 3 * 3 * 2  # resolutions, kernels, expansions, depths, widths
    assert space.largest() in uniform and space.smallest() in uniform
    assert all(len({b for s in a.blocks for b in s}) == 1 for a in uniform)
    budget = sorted(latency(a) for a in uniform)[len(uniform) // 2]
    log_params = lambda archs: [np.log(sum(layer_params(u) for u in space.layers(a))) for a in archs]  # noqa: E731
    make = lambda strategy: EvolutionFinder(space, latency, log_params, latency.fastest(),  # noqa: E731
                                            EvolutionConfig(strategy, population=20, generations=30))
    picked = make("uniform").search(budget)
    assert picked.best.arch in uniform and picked.best.latency_ms == budget  # the slowest that fits: at the median
    rnd = make("random").search(budget)
    assert rnd.evaluated == EvolutionConfig(population=20, generations=30).candidates == make("evolution").search(budget).evaluated
    with pytest.raises(BadInput, match="--strategy"):
        EvolutionConfig("grid")


def test_the_fit_takes_the_slowest_network_on_the_front_that_measures_within_the_budget():
    """`search.fit` on a front whose networks read 10% under their predictions: it binary-searches the front, takes the
    most accurate one that reads within the budget twice, and says what the next one up read."""
    from edgenas.search.evolution import Candidate
    from edgenas.search.fit import HEADROOM, MAX_MEASURED, fit_to_budget

    archs = list(itertools.islice(all_archs(SPACE), 40))
    front = [Candidate(a, 0.1 + 0.01 * i, 0.5 + 0.01 * i) for i, a in enumerate(archs)]
    ms = {a: round(0.9 * c.latency_ms, 6) for a, c in zip(archs, front)}
    fit = fit_to_budget(front, 0.3, lambda a: ms[a])
    chosen, limit = front[fit.index], 0.3 * (1 - HEADROOM)  # the budget less what the artifact may read above it
    assert fit.fits and ms[chosen.arch] <= limit < ms[front[fit.index + 1].arch] and "3% headroom" in fit.why
    assert fit_to_budget(front, 0.3, lambda a: ms[a], headroom=0).index > fit.index  # none: up to the budget itself
    assert sum(len(t.readings_ms) for t in fit.tried) <= MAX_MEASURED + 1 and "the next one up the front measured" in fit.why
    assert [t.readings_ms for t in fit.tried if t.encoding == chosen.arch.encoding] == [(ms[chosen.arch],) * 2]
    # a second reading over the budget (noise, or load) moves the choice down to a network read steady within it
    reads = {}

    def noisy(a):
        reads[a] = reads.get(a, 0) + 1
        return ms[a] * (1.2 if a == chosen.arch and reads[a] == 2 else 1)

    again = fit_to_budget(front, 0.3, noisy)
    steady = [t.readings_ms for t in again.tried if t.encoding == front[again.index].arch.encoding]
    assert again.fits and again.index < fit.index and len(steady[0]) == 2 and 2 * max(steady[0]) - min(steady[0]) <= limit
    # nothing on the front fits: the fastest network measured is handed on, over the budget, to be pruned
    over = fit_to_budget(front, 0.01, lambda a: ms[a])
    assert not over.fits and over.index == 0 and "over the 0.01 ms budget" in over.why
    # a budget above the whole front: its most accurate network
    assert fit_to_budget(front, 100, lambda a: ms[a]).index == len(front) - 1


@pytest.mark.parametrize("backend", ["tvm", "ort"])
def test_a_network_read_again_is_timed_again_not_built_again(backend, monkeypatch):
    """The fit reads its networks twice: the second reading re-times the kept library; a new graph is built anew."""
    import edgenas.measure.onnx_export as onnx_export
    import edgenas.measure.shipped as shipped
    import edgenas.measure.tvm as tvm_backend
    from edgenas.measure.onnx_export import to_onnx
    from edgenas.measure.shipped import ShippedMeter
    from edgenas.measure.timing import MeasureConfig
    from edgenas.tables.key import TableKey
    from edgenas.targets import get_target

    built = {"quantized": 0, "compiled": 0}

    def counting(name, f):
        def wrapped(*a, **k):
            built[name] += 1
            return f(*a, **k)
        return wrapped

    monkeypatch.setattr(shipped, "shipped_onnx", counting("quantized", onnx_export.shipped_onnx))
    monkeypatch.setattr(tvm_backend, "compile_onnx", counting("compiled", tvm_backend.compile_onnx))
    key = TableKey(get_target("host"), backend, "int8", SPACE, 1)
    small, large = SPACE.smallest(), SPACE.largest()
    graphs = [to_onnx(Network(SPACE, a).eval(), (1, SPACE.in_channels, a.resolution, a.resolution)) for a in (small, large)]
    shape = lambda a: (1, SPACE.in_channels, a.resolution, a.resolution)  # noqa: E731
    with ShippedMeter(key, MeasureConfig(repeat=5)) as meter:
        first, again = meter(graphs[0], shape(small)), meter(graphs[0], shape(small))
        other = meter(graphs[1], shape(large))
    assert built == {"quantized": 2, "compiled": 2 if backend == "tvm" else 0}
    assert min(first, again, other) > 0
