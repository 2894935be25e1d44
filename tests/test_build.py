"""`edgenas build` end to end on a slice of the digits and the tiny space: outputs, the resume path and bad input."""

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TINY_SPACE, assert_one_line_error, reachable_prune_ratio, run_cli, start_cli, table_file
from edgenas.compress.pays import FITS
from edgenas.compress.quantize import QuantizeConfig
from edgenas.artifact.artifact import load_artifact
from edgenas.pipeline.rundir import RECORD, SCHEMA_VERSION
from edgenas.tables.latency_table import LatencyTable

EARLY = ("precision", "profile", "train", "search")


def build_args(tables, out, budget_ms, *extra):
    return ("build", "--space", TINY_SPACE, "--backend", "ort", "--tables", tables, "--out", out, "--budget-ms", budget_ms,
            "--epochs", 1, "--limit", 640, "--subnets", 10, "--generations", 5, "--population", 10, "--finetune-epochs", 0,
            "--calibration", 50, "--repeat", 5, "--threads", 1, *(() if "--precision" in extra else ("--precision", "int8")),
            *extra)


def record(out) -> dict:
    return json.loads((out / RECORD).read_text())


def kill_after(args, out, stage: str, timeout: float = 600) -> str:
    """Start the build, and kill it (SIGKILL: nothing gets to clean up) as soon as `stage` is recorded finished;
    returns what it printed on stderr."""
    proc = start_cli(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if record(out)["stages"].get(stage, {}).get("status") == "done":
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        assert proc.poll() is None, f"the build ended before it could be killed:\n{proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.stderr.read()


#: a CPU no machine running the tests has (a real one, such as znver4, is the CPU of some CI machines)
OTHER_CPU = "icelake-server-test-cpu-elsewhere"


def tables_of_another_cpu(tiny_tables, tables) -> Path:
    """`tables` holding only a table of the tiny space measured on another CPU, as a checkout measured elsewhere holds."""
    mine = table_file(tiny_tables)
    theirs = tables / "host" / OTHER_CPU / mine.relative_to(mine.parents[1])
    theirs.parent.mkdir(parents=True)
    data = json.loads(mine.read_text())
    data["meta"]["identity"]["device"] = OTHER_CPU
    data["meta"]["device"].update(key=OTHER_CPU, cpu="Test CPU elsewhere", llvm_cpu="icelake-server")
    theirs.write_text(json.dumps(data))
    return theirs


@pytest.fixture(scope="module")
def built(tiny_run, tmp_path_factory):
    """A build killed right after its search, then run again with fine-tuning added: (out, JSON, record before). The
    table directory starts with a table of another CPU only, so the build first profiles this one."""
    root = tmp_path_factory.mktemp("build")
    tables, out = root / "tables", root / "run"
    tables_of_another_cpu(tiny_run[0], tables)
    stderr = kill_after(build_args(tables, out, 5), out, "search")
    before = record(out)["stages"]
    # the stages after the search have not started: the resumed command may change what they read
    proc = run_cli(*build_args(tables, out, 5, "--finetune-epochs", 1), "--json", check=0)
    return tables, out, json.loads(proc.stdout), before, stderr + proc.stderr


def test_a_table_of_another_cpu_is_neither_refused_nor_taken_as_this_ones(built):
    """It is what this device's table is adapted from: a few blocks measured here, the rest fitted from it."""
    tables, out, r, _, stderr = built
    said = [ln for ln in stderr.splitlines() if "adapting it from 1 table of" in ln]
    assert len(said) == 1 and "no ort-int8 table" in said[0] and OTHER_CPU in said[0], stderr
    assert "refused" not in stderr and "Traceback" not in stderr
    mine = table_file(tables)
    assert r["summary"]["table"] == str(mine) and mine.exists() and mine.with_suffix(".validation.json").exists()
    table = LatencyTable.load(mine)
    assert table.identity["device"] != OTHER_CPU and table.correction is not None
    # adapted, or measured in full when the adapted table predicted its held-out networks too loosely
    assert table.meta.get("adapted", {}).get("sources", [f"host/{OTHER_CPU}/tiny/ort-int8.json"]) == \
        [f"host/{OTHER_CPU}/tiny/ort-int8.json"]


def test_resume_after_a_kill_repeats_no_finished_stage(built):
    _, out, r, before, stderr = built
    assert set(before) >= set(EARLY) and all(before[s]["status"] == "done" for s in EARLY)
    after = record(out)["stages"]
    for s in EARLY:
        assert after[s]["finished"] == before[s]["finished"] and after[s]["runs"] == 1, s
        assert f"{s}: reused" in stderr, stderr
    assert list(after) == ["precision", "profile", "train", "search", "prune", "quantize", "compile", "bench"]
    assert all(a["status"] == "done" for a in after.values())
    assert r["stages"] == {n: {k: a.get(k) for k in ("status", "seconds", "runs", "finished")} for n, a in after.items()}


def test_build_writes_every_output(built):
    tables, out, r, _, _ = built
    sm = r["summary"]
    assert sm["within_budget"] is True and sm["backend"] == "ort" and sm["target"] == "host" and sm["precision"] == "int8"
    measured = sm["measured_ms"]
    assert 0 < measured["artifact"] <= sm["budget_ms"] and measured["searched"] > 0 and measured["pruned"] > 0
    # a 5 ms budget: one reading, within it (a second is taken only over the budget)
    assert sm["artifact_readings_ms"] == [sm["artifact_runs"]["ort"]["min_ms"]] == [measured["artifact"]]
    # an ONNX Runtime build ships an ONNX Runtime artifact: its model, measured and judged with ONNX Runtime alone
    assert list(sm["artifact_runs"]) == ["ort"] and sm["runtime"] == "ort"
    art = load_artifact(sm["artifact"])
    assert art.meta.runtime == "ort" and set(art.meta.files) == {"model.onnx", "README.md"} and art.meta.compile is None
    # the prediction shown for the artifact is the pruned int8 network's, from the int8 table the search used
    assert sm["predicted_ms"]["artifact"] == sm["predicted_ms"]["pruned"] and sm["table"].endswith("ort-int8.json")
    pruning = record(out)["stages"]["prune"]["result"]
    # the searched network was fine-tuned first, into a bundle of its own: what pruning has to beat
    assert (out / "tuned" / "model.onnx").exists() and pruning["tuned"]["val_accuracy"] == sm["accuracy"]["tuned_fp32"]
    # the searched network fits (--prune-ratio 1): the fine-tuned searched network ships unpruned, and the record says why
    fit = record(out)["stages"]["search"]["result"]["fit"]
    assert not sm["pruned"] and pruning["verdict"] is None and fit["fits"]
    assert pruning["why_not"] == sm["pruning"] == FITS and pruning["model"] == str(out / "tuned")
    assert sm["macs"]["shipped"] == sm["macs"]["searched"] and sm["predicted_ms"]["pruned"] == sm["predicted_ms"]["searched"]
    # the network was chosen on the search's front by measurement, and the summary says how much of the budget it uses
    assert sm["fit"] == record(out)["stages"]["search"]["result"]["fit"]["why"] and "measured within the budget" in sm["fit"]
    assert sm["budget_used"] == round(measured["artifact"] / sm["budget_ms"], 4)
    acc = sm["accuracy"]
    # better than chance (10 classes; one epoch of supernet training, then pruning without fine-tuning), and within the
    # quantizer's accuracy gate of the pruned fp32 network
    assert 0.1 < acc["int8"] <= 1 and abs(acc["pruned_fp32"] - acc["int8"]) * 100 == pytest.approx(abs(acc["int8_drop_points"]), abs=0.01)
    assert acc["int8_drop_points"] <= QuantizeConfig.max_drop
    # the artifact is sealed and is the one the summary names, with the accuracy and latency it was built with
    art = load_artifact(sm["artifact"])
    assert art.meta.accuracy["int8"] == acc["int8"] and sm["files_bytes"]["model.onnx"] == (art.path / "model.onnx").stat().st_size
    for d in ("search", "fp32", "tuned", "int8"):
        assert (out / d / ("best.json" if d == "search" else "model.onnx")).exists(), d
    report = (out / "report.md").read_text()
    for image in ("search/pareto.png", "latency.png"):
        assert f"]({image})" in report and (out / image).stat().st_size > 1000
    assert sm["network"] in report and json.loads((out / "summary.json").read_text()) == r
    x = out / "x.npy"
    __import__("numpy").save(x, __import__("numpy").zeros((28, 28), "uint8"))
    assert json.loads(run_cli("run", sm["artifact"], "--input", x, "--json", check=0).stdout)["label"]


def test_a_changed_budget_reruns_only_what_depends_on_it(built):
    tables, out, r, _, _ = built
    old = record(out)["stages"]
    budget = round(r["summary"]["predicted_ms"]["searched"] * 2, 4)
    proc = run_cli(*build_args(tables, out, budget, "--prune-ratio", 1, "--json"))
    new = json.loads(proc.stdout)
    # exit 1 only for the verdict: networks of about 0.05 ms can time well over their prediction on a busy machine
    assert proc.returncode == (0 if new["summary"]["within_budget"] else 1), proc.stderr
    readings = new["summary"]["artifact_readings_ms"]
    assert new["summary"]["measured_ms"]["artifact"] == min(readings)
    assert len(readings) >= 2 if readings[0] > budget else len(readings) == 1
    stages = record(out)["stages"]
    for s in ("profile", "train"):
        assert stages[s]["finished"] == old[s]["finished"], s
    for s in ("search", "prune", "quantize", "compile", "bench"):
        assert stages[s]["finished"] > old[s]["finished"] and stages[s]["fingerprint"] != old[s]["fingerprint"], s
    assert new["summary"]["budget_ms"] == budget
    # --prune-ratio 1 prunes only to fit: when no network on the search's front measured within the budget, which a busy
    # machine can do to networks of about 0.05 ms
    if stages["search"]["result"]["within_budget"] is not False:
        assert not new["summary"]["pruned"] and not (out / "pruned").exists()


@pytest.mark.parametrize("budget", ["0", "-1", "nan", "inf", "abc"])
def test_bad_budgets(tmp_path, budget):
    proc = run_cli(*build_args(tmp_path / "tables", tmp_path / "run", budget))
    assert_one_line_error(proc, "--budget-ms")
    assert not (tmp_path / "tables").exists()


def test_unreachable_budget_fails_before_training(tiny_run, tmp_path):
    # a complete, validated table of this machine: nothing to measure, so this takes seconds
    proc = run_cli(*build_args(tiny_run[0], tmp_path / "run", 0.001))
    assert_one_line_error(proc, "fastest reachable latency")
    assert not list((tmp_path / "run").glob("supernet-*"))


def test_a_run_directory_of_another_version_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"schema": "edgenas.build", "schema_version": SCHEMA_VERSION, "edgenas": "0.0.1",
                                          "stages": {}}))
    assert_one_line_error(run_cli(*build_args(tmp_path / "tables", out, 5)), str(out / RECORD), "edgenas 0.0.1")
    (out / RECORD).write_text("{not json")
    assert_one_line_error(run_cli(*build_args(tmp_path / "tables", out, 5)), str(out / RECORD))


def test_two_builds_in_one_directory_are_locked_out(tmp_path):
    from edgenas.jsonio import exclusive_lock

    out = tmp_path / "run"
    with exclusive_lock(out / RECORD):
        assert_one_line_error(run_cli(*build_args(tmp_path / "tables", out, 5)), "another edgenas process", code=1)
    assert not (tmp_path / "tables").exists()


def test_an_output_directory_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    assert_one_line_error(run_cli(*build_args(tmp_path / "tables", tmp_path / "file" / "run", 5)), "--out", "is a file")
    assert_one_line_error(run_cli(*build_args(tmp_path / "file" / "tables", tmp_path / "run", 5)), "--tables", "is a file")


def test_an_fp32_build_budgets_against_the_fp32_table_and_ships_fp32(built, tmp_path):
    tables, out, _, _, _ = built
    proc = run_cli(*build_args(tables, tmp_path / "run", 5, "--precision", "fp32", "--prune-ratio", 1, "--json"))
    assert proc.returncode == 0, proc.stderr
    sm = json.loads(proc.stdout)["summary"]
    assert sm["precision"] == "fp32" and sm["table"] == str(table_file(tables, precision="fp32"))
    assert sm["accuracy"]["int8"] is None and not (tmp_path / "run" / "int8").exists()
    art = load_artifact(sm["artifact"])
    assert art.meta.runtime == "ort" and "int8" not in art.meta.accuracy and sm["measured_ms"]["artifact"] <= sm["budget_ms"]
    assert {n.op_type for n in __import__("onnx").load(art.model_file).graph.node}.isdisjoint({"QuantizeLinear", "DequantizeLinear"})


def test_a_build_with_the_default_precision_measures_both_and_ships_what_it_measured(built, tmp_path):
    """`--precision auto` (the default): the precision stage probes both precisions, the search budgets against the
    chosen precision's table, and the quantize stage's side-by-side measurement of the shipped network has the last word."""
    tables, out, *_ = built
    run = tmp_path / "run"
    shutil.copytree(out, run)  # the supernet is reused: its training does not depend on the precision
    proc = run_cli(*build_args(tables, run, 5, "--precision", "auto", "--json"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    sm, stages = r["summary"], record(run)["stages"]
    assert stages["train"]["runs"] == 1 and stages["precision"]["runs"] >= 1
    chosen = stages["precision"]["result"]
    assert set(chosen["measured_ms"]["ort"]) == {"int8", "fp32"} and sm["searched_precision"] == chosen["precision"]
    assert sm["table"] == str(table_file(tables, precision=chosen["precision"]))
    if chosen["precision"] == "int8":  # int8 made: the shipped network measured in both, and the faster ships
        side = sm["side_by_side_ms"]["ort"]
        assert set(side) == {"int8", "fp32"} and sm["precision_why"].startswith(f"ort {sm['precision']}")
        assert sm["accuracy"]["int8"] is not None and (run / "int8" / "model.onnx").exists()
    else:  # the probe found fp32 faster: nothing is quantized, and the probe's reason is what the summary gives
        assert sm["precision"] == "fp32" and sm["side_by_side_ms"] is None and sm["precision_why"] == chosen["why"]
    assert ("int8" in load_artifact(sm["artifact"]).meta.accuracy) == (sm["precision"] == "int8") and sm["within_budget"]


def test_pruning_from_above_ships_the_more_accurate_network_both_fine_tuned_alike(built, tiny_run, tmp_path):
    """--prune-ratio below 1: a second search up to budget / ratio, its network fine-tuned and pruned down to the budget,
    set against the network searched at the budget given the same recovery epochs; the pruned one ships only when it
    fits and is more accurate, measured side by side. On the committed tiny table (`conftest.FIXED_TINY_TABLE`), whose
    range is wide enough for the two searches to differ, handed over as this machine's."""
    from dataclasses import replace

    from conftest import FIXED_TINY_TABLE
    from edgenas.pipeline.build import run, trained
    from edgenas.pipeline.config import BuildConfig
    from edgenas.pipeline.products import PrecisionProduct, TableProduct
    from edgenas.search.report import SearchReport
    from edgenas.tables.device import device_key

    _, run_dir, *_ = built
    stages = record(run_dir)["stages"]
    largest = SearchReport.from_dict(stages["search"]["result"])  # the largest network, measured here
    tables = tmp_path / "tables"
    table = json.loads(FIXED_TINY_TABLE.read_text())
    table["meta"]["identity"]["device"] = device_key()
    table_file(tables).parent.mkdir(parents=True)
    table_file(tables).write_text(json.dumps(table))
    budget, ratio = round(largest.measured_latency_ms * 0.75, 6), 0.8
    given = {"precision": PrecisionProduct("int8", "asked for", {}, None, backend="ort"),
             "profile": TableProduct(str(table_file(tables)), len(table["entries"]), "int8", device_key(), None),
             "train": trained(tiny_run[1])}  # trained long enough for larger networks to be predicted more accurate
    flags = dict(backend="ort", precision="int8", space=TINY_SPACE, tables=tables, out=tmp_path / "run", threads=1,
                 repeat=5, budget_ms=budget, subnets=10, generations=5, population=10, finetune_epochs=1)
    at = run(BuildConfig.from_flags(**flags), only=("search",), given=given).results["search"]
    at = replace(at, within_budget=True)  # set against pruning from above as a network that fits
    p = run(BuildConfig.from_flags(**flags, prune_ratio=ratio), only=("prune",), given={**given, "search": at}).results["prune"]
    out = tmp_path / "run"
    above = SearchReport.from_dict({k: v for k, v in json.loads((out / "above" / "search" / "best.json").read_text()).items()
                                    if k in SearchReport.__dataclass_fields__})
    assert above.budget_ms == pytest.approx(budget / ratio)
    if above.encoding == at.encoding:  # nothing above the budget to prune: said so
        assert not p.pruned and "found the network searched at the budget" in p.why_not
        return
    if p.verdict is None:  # pruning could not bring it down to the budget, or it fitted as it was
        assert not p.pruned and ("out of reach" in p.why_not or "already fits" in p.why_not), p.why_not
        return
    v, side = p.verdict, p.side_by_side_ms
    assert (v.before_ms, v.after_ms) == (side["searched"], side["pruned"]) and v.measured
    more = json.loads((out / "tuned-more" / "model.json").read_text())["accuracy"]["fp32"]
    pruned = json.loads((out / "above" / "pruned" / "model.json").read_text())["accuracy"]["fp32"]
    assert (v.before_accuracy, v.after_accuracy) == (more, pruned)  # the searched network got the recovery epoch too
    assert v.pays == (side["pruned"] <= budget and pruned > more) == p.pruned
    if p.pruned:
        assert p.model == str(out / "above" / "pruned") and p.network.startswith(above.encoding)
        assert p.searched_above.predicted_ms == above.predicted_latency_ms and p.after.predicted_ms < above.predicted_latency_ms
    else:
        assert p.model == str(out / "tuned-more") and p.why_not == v.why and p.network is None


def test_a_searched_network_that_measured_over_the_budget_is_pruned_to_fit(built, tmp_path):
    """The prune stage handed a search whose front had no network within the budget (here: a budget below what the
    searched network measured) prunes it with NetAdapt toward the budget, its goal scaled by how far over it read, and
    ships it pruned whatever it cost; pruning that cannot get there ships the network unpruned and says why."""
    from dataclasses import replace

    from edgenas.pipeline.build import run
    from edgenas.pipeline.config import BuildConfig
    from edgenas.pipeline.products import PrecisionProduct, TableProduct
    from edgenas.search.fit import HEADROOM
    from edgenas.search.report import SearchReport

    tables, run_dir, r, *_ = built
    stages = record(run_dir)["stages"]
    s = SearchReport.from_dict(stages["search"]["result"])
    ratio = reachable_prune_ratio(s.arch, s.table) or 0.01  # 0.01: out of reach on any table
    # one reading (held as it is) and a budget whose goal, less the headroom, is `ratio` of the prediction: how noisy the
    # search's own readings were on a busy machine decides nothing here
    s = replace(s, measured_readings_ms=[s.measured_latency_ms])
    budget = round(s.measured_latency_ms * ratio / (1 - HEADROOM), 6)
    cfg = BuildConfig.from_flags(backend="ort", precision="int8", space=TINY_SPACE, tables=tables, out=tmp_path / "run",
                                 threads=1, repeat=5, budget_ms=budget, finetune_epochs=0)
    p = run(cfg, only=("prune",), given={"precision": PrecisionProduct("int8", "asked for", {}, None, backend="ort"),
                                          "profile": TableProduct.from_dict(stages["profile"]["result"]),
                                          "search": replace(s, budget_ms=budget, within_budget=False)}).results["prune"]
    if ratio == 0.01:
        assert not p.pruned and "is out of reach" in p.why_not
        return
    assert p.pruned and p.fit.startswith("pruned to fit") and f"{s.measured_latency_ms:.4f} ms" in p.fit
    assert p.after.predicted_ms <= s.predicted_latency_ms * ratio * 1.0001 and p.verdict is None
    assert f"{p.after.measured_ms:.4f} ms" in p.fit


def _quantize_stage(built, out, max_drop: float, backend: str = "ort"):
    """An auto build's quantize stage, run on the fixture's pruned network, the precision stage having chosen int8."""
    from edgenas.pipeline.build import run
    from edgenas.pipeline.config import BuildConfig
    from edgenas.pipeline.products import PrecisionProduct, PrunedProduct

    tables, run_dir, *_ = built
    cfg = BuildConfig.from_flags(backend=backend, space=TINY_SPACE, tables=tables, out=out, threads=1, repeat=5,
                                 calibration=50, max_drop=max_drop)
    given = {"precision": PrecisionProduct("int8", "the probe's reason", {}, None, backend="ort"),
             "prune": PrunedProduct.from_dict(record(run_dir)["stages"]["prune"]["result"])}
    return run(cfg, only=("quantize",), given=given).results["quantize"]


def test_auto_ships_the_precision_in_which_the_shipped_network_itself_runs_faster(built, tmp_path):
    from edgenas.tables.deployment import TIE

    q = _quantize_stage(built, tmp_path / "run", 1.0)
    i8, f32 = q.measured_ms["ort"]["int8"], q.measured_ms["ort"]["fp32"]
    assert min(i8, f32) > 0 and q.precision == ("int8" if i8 <= f32 * (1 + TIE) else "fp32") and q.backend == "ort"
    assert q.why.startswith(f"ort {q.precision}: the shipped network ran in {min(i8, f32) if q.precision == 'int8' or f32 < i8 else f32:.4f}"[:40])
    shipped = (tmp_path / "run" / "int8") if q.precision == "int8" else Path(record(built[1])["stages"]["prune"]["result"]["model"])
    assert Path(q.model) == shipped and q.int8_accuracy is not None  # the gate's figures are kept either way


def test_auto_backend_ships_the_runtime_in_which_the_shipped_network_runs_fastest(built, tmp_path):
    """Every runtime that runs here measures the shipped network in both precisions side by side; int8 goes to another
    runtime than the one whose gate it passed only after passing the gate there too."""
    from edgenas.measure.backends import reachable_backends
    from edgenas.tables.deployment import Deployment, fastest
    from edgenas.targets import get_target

    q = _quantize_stage(built, tmp_path / "run", 1.0, backend="auto")
    runtimes = reachable_backends(get_target("host"), None)[0]
    assert set(q.measured_ms) == set(runtimes) and all(set(v) == {"int8", "fp32"} for v in q.measured_ms.values())
    flat = {Deployment(b, p): ms for b, by_p in q.measured_ms.items() for p, ms in by_p.items()}
    if q.judged_by is None:  # nothing was refused: the rule's pick, from the very figures recorded
        assert fastest(flat, "the shipped network", "here")[0] == Deployment(q.backend, q.precision)
    assert q.why.startswith(f"{q.backend} {q.precision}: the shipped network ran in {flat[Deployment(q.backend, q.precision)]:.4f} ms")
    if q.precision == "int8" and q.backend != "ort":  # gated on ONNX Runtime (the stage's probe), judged again where it ships
        assert q.judged_by == q.backend and q.drop_points <= 1.0
    assert q.int8_accuracy is not None


def test_auto_ships_fp32_when_int8_fails_its_gate(built, tmp_path):
    q = _quantize_stage(built, tmp_path / "run", -100.0)  # int8 would have to gain 100 points
    pruned = record(built[1])["stages"]["prune"]["result"]
    assert q.precision == "fp32" and q.model == pruned["model"] and q.measured_ms is None
    assert q.why.startswith("fp32: int8 failed the accuracy gate on ort") and "--max-drop -100" in q.why


def test_a_bad_data_file_fails_before_any_profile(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    x[3, 2, 2] = np.nan
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=np.arange(40) % 2)
    tables = tmp_path / "tables"
    proc = run_cli(*build_args(tables, tmp_path / "run", 5, "--data", bad), check=None)
    assert_one_line_error(proc, str(bad), "NaN or infinite values in 1 of 40 images", code=2)
    assert not tables.exists()  # nothing was profiled
