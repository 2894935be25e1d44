"""`edgenas search` end to end: a supernet trained for real on a slice of the digits, a real ORT table."""

import json
import time

import pytest

from conftest import TINY_SPACE, assert_one_line_error, run_cli, table_file
from edgenas.tables.latency_model import LatencyModel
from edgenas.space import Arch, get_space
from edgenas.tables.latency_table import LatencyTable


@pytest.fixture(scope="module")
def setup(tiny_run):
    tables, run = tiny_run
    predictor = LatencyModel(LatencyTable.load(table_file(tables)), get_space(TINY_SPACE))
    return tables, run, predictor


def search(setup, budget, *extra, **kw):
    tables, run, _ = setup
    return run_cli("search", "--supernet", run, "--backend", "ort", "--tables", tables, "--budget-ms", budget, "--threads", 1,
                   "--generations", 20, "--population", 20, "--subnets", 30, *extra, **kw)


def test_search_respects_budget_and_writes_outputs(setup, tmp_path):
    _, _, predictor = setup
    budget = predictor.fastest()[0] * 1.5
    r = json.loads(search(setup, budget, "--out", tmp_path / "s", "--json", check=0).stdout)
    for key in ("budget_ms", "predicted_latency_ms", "measured_latency_ms", "val_accuracy", "evaluated", "seconds", "arch"):
        assert key in r
    # measured, the search looks up to the budget plus the table's band, then measures its way down the front
    assert r["predicted_latency_ms"] <= r["search_budget_ms"] == pytest.approx(budget * (1 + r["margin_pct"] / 100))
    assert r["measured_latency_ms"] > 0
    fit, readings = r["fit"], r["measured_readings_ms"]
    tried = {t["encoding"]: t for t in fit["tried"]}
    assert tried[r["encoding"]]["readings_ms"] == readings and r["measured_latency_ms"] == min(readings)
    # the chosen network was read twice and fits only if its higher reading plus their spread is within the budget less
    # its headroom; every network up the front was measured over that, or read twice and not steady within it
    from edgenas.search.fit import HEADROOM

    limit = budget * (1 - HEADROOM)
    assert r["within_budget"] == fit["fits"] == (len(readings) == 2 and 2 * max(readings) - min(readings) <= limit)
    if fit["fits"]:
        up = [t for e, t in tried.items() if e != r["encoding"] and t["predicted_ms"] >= round(r["predicted_latency_ms"], 6)]
        assert all(min(u) > limit or (len(u) == 2 and 2 * max(u) - min(u) > limit) for u in (t["readings_ms"] for t in up)), (fit, limit)
        assert "measured within the budget" in fit["why"]
        # the front: every network measured below the chosen one is predicted less accurate
        assert all(t["predicted_accuracy"] <= round(r["predicted_accuracy"], 6) for t in tried.values() if t not in up), (fit, r)
    # the accuracy reported is the winner's on the validation split, with the supernet's weights (a range check would
    # hold for anything: near the fastest network, a 2-epoch supernet can sit at chance)
    from edgenas.search.search import run_split
    from edgenas.supernet.evaluate import SubnetEvaluator
    from edgenas.supernet.train import load_supernet

    supernet, record = load_supernet(setup[1])
    evaluator = SubnetEvaluator(supernet, run_split(record, setup[1]))
    assert r["val_accuracy"] == pytest.approx(evaluator(Arch.from_dict(r["arch"])), abs=0.01)
    overrun = predictor.table.correction.overrun_p95_pct  # the guard band comes from validate
    assert r["margin_pct"] == pytest.approx(max(0.0, overrun))
    assert r["evaluated"] == 20 + 20 * 15 and r["unique"] <= r["evaluated"]
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["encoding"] == r["encoding"] and best["table_correction"]["coef"]
    rows = (tmp_path / "s" / "pareto.csv").read_text().splitlines()
    assert rows[0].startswith("predicted_latency_ms") and len(rows) >= 2
    assert all(float(row.split(",")[0]) <= r["search_budget_ms"] for row in rows[1:])
    assert (tmp_path / "s" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    log = (tmp_path / "s" / "search.log").read_text()
    assert "generation 20" in log and f"chosen: {fit['why']}" in log


def test_guard_band_option_and_its_floor(setup, tmp_path):
    fastest = setup[2].fastest()[0]
    r = json.loads(search(setup, fastest * 2, "--margin-pct", 25, "--no-measure", "--json", check=0).stdout)
    assert r["margin_pct"] == 25 and r["search_budget_ms"] == pytest.approx(fastest * 2 / 1.25)
    assert r["predicted_latency_ms"] <= r["search_budget_ms"]
    # a budget inside the guard band of the fastest network: searched up to the fastest, with a warning
    proc = search(setup, fastest * 1.05, "--margin-pct", 10, "--no-measure", "--json", check=0)
    r = json.loads(proc.stdout)
    assert r["search_budget_ms"] == pytest.approx(fastest) and "error margin" in proc.stderr
    assert_one_line_error(search(setup, fastest * 2, "--margin-pct", -1), "--margin-pct")


def test_fixed_seed_is_reproducible(setup, tmp_path):
    budget = setup[2].fastest()[0] * 1.3
    a = json.loads(search(setup, budget, "--seed", 7, "--no-measure", "--out", tmp_path / "a", "--json", check=0).stdout)
    b = json.loads(search(setup, budget, "--seed", 7, "--no-measure", "--out", tmp_path / "b", "--json", check=0).stdout)
    assert a["arch"] == b["arch"] and a["predicted_latency_ms"] == b["predicted_latency_ms"]


def test_impossible_budget_fails_fast(setup):
    fastest = setup[2].fastest()[0]
    start = time.time()
    line = assert_one_line_error(search(setup, fastest / 10), "fastest reachable latency", f"{fastest:.4f} ms")
    assert time.time() - start < 30, line  # start-up and table loading, no sub-network is evaluated


@pytest.mark.parametrize("budget", ["0", "-1", "abc"])
def test_bad_budget(setup, budget):
    proc = search(setup, budget)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "budget" in proc.stderr.lower()
