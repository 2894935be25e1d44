"""The build's resume logic on its own, in-process: `run_stage` and the run record with stand-in stages.

The stand-ins count their runs, so each check says exactly which stages ran: skipped when finished on the same
inputs, re-run with everything downstream when an input changes, resumed (output kept) after an interruption.
"""

from __future__ import annotations

import json
from dataclasses import replace
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from edgenas.errors import BadInput, Interrupted
from edgenas.pipeline.build import run_stage
from edgenas.pipeline.products import BenchProduct, NetworkFigures, Product, PrunedProduct
from edgenas.pipeline.rundir import RECORD, RunRecord
from edgenas.pipeline.stages import STAGES, Stage


@dataclass(frozen=True)
class Made(Product):
    KIND: ClassVar[str] = "made"
    value: int
    path: str


@dataclass
class FakeContext:
    out: Path
    settings: dict
    results: dict = field(default_factory=dict)
    ran: list = field(default_factory=list)
    fail: str | None = None  # the stage that is interrupted


def _stage(name: str, after: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> Stage:
    def run(ctx: FakeContext) -> Made:
        ctx.ran.append(name)
        d = ctx.out / (outputs[0] if outputs else name)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"progress-{len(ctx.ran)}").write_text("saved")
        if ctx.fail == name:
            raise KeyboardInterrupt
        upstream = sum(ctx.results[a].value for a in after)
        return Made(ctx.settings[name] + upstream, str(d))

    return Stage(name, after, (), lambda ctx: {"setting": ctx.settings[name]}, run, Made, outputs)


STAND_INS = (_stage("a"), _stage("b", ("a",), ("b-out",)), _stage("c", ("b",), ("c-out",)))


def _build(out: Path, settings: dict, fail: str | None = None) -> FakeContext:
    ctx = FakeContext(out, settings, fail=fail)
    record, fps = RunRecord(out, {"settings": settings}), {}
    for stage in STAND_INS:
        run_stage(stage, ctx, record, fps, stage.name)
    return ctx


def test_finished_stages_are_skipped_and_their_products_read_back_typed(tmp_path):
    first = _build(tmp_path, {"a": 1, "b": 10, "c": 100})
    assert first.ran == ["a", "b", "c"]
    assert first.results["c"] == Made(111, str(tmp_path / "c-out"))
    record = json.loads((tmp_path / RECORD).read_text())
    assert {n: r["status"] for n, r in record["stages"].items()} == {"a": "done", "b": "done", "c": "done"}
    assert record["stages"]["c"]["result"] == {"product": "made", "value": 111, "path": str(tmp_path / "c-out")}

    again = _build(tmp_path, {"a": 1, "b": 10, "c": 100})
    assert again.ran == []
    assert again.results == first.results and all(isinstance(p, Made) for p in again.results.values())


def test_a_changed_input_reruns_its_stage_and_everything_downstream_only(tmp_path):
    _build(tmp_path, {"a": 1, "b": 10, "c": 100})
    fps = {n: r["fingerprint"] for n, r in json.loads((tmp_path / RECORD).read_text())["stages"].items()}
    ctx = _build(tmp_path, {"a": 1, "b": 20, "c": 100})
    assert ctx.ran == ["b", "c"]
    assert ctx.results["c"].value == 121
    new = {n: r["fingerprint"] for n, r in json.loads((tmp_path / RECORD).read_text())["stages"].items()}
    assert new["a"] == fps["a"] and new["b"] != fps["b"] and new["c"] != fps["c"]  # c's own setting did not change
    # the re-run stages started from empty output directories: nothing of the old output leaks into the new
    assert sorted(p.name for p in (tmp_path / "b-out").iterdir()) == ["progress-1"]
    assert sorted(p.name for p in (tmp_path / "c-out").iterdir()) == ["progress-2"]


def test_an_interrupted_stage_resumes_with_its_saved_progress_and_other_inputs_start_it_afresh(tmp_path):
    with pytest.raises(Interrupted, match="interrupted in stage b"):
        _build(tmp_path, {"a": 1, "b": 10, "c": 100}, fail="b")
    record = json.loads((tmp_path / RECORD).read_text())["stages"]
    assert record["a"]["status"] == "done" and record["b"]["status"] == "running" and "c" not in record

    resumed = _build(tmp_path, {"a": 1, "b": 10, "c": 100})
    assert resumed.ran == ["b", "c"]  # a is not repeated
    assert (tmp_path / "b-out" / "progress-2").exists()  # the interrupted run's progress was kept for the resume
    assert json.loads((tmp_path / RECORD).read_text())["stages"]["b"]["runs"] == 2

    with pytest.raises(Interrupted):
        _build(tmp_path, {"a": 1, "b": 30, "c": 100}, fail="b")
    restarted = _build(tmp_path, {"a": 1, "b": 40, "c": 100})
    assert restarted.ran == ["b", "c"]
    assert [p.name for p in (tmp_path / "b-out").iterdir()] == ["progress-1"]  # other inputs: emptied first


def test_a_stage_that_makes_its_own_input_is_recorded_with_the_input_it_made(tmp_path):
    """As profile does: its fingerprint includes the table's checksum, which exists only once it has run."""
    made = tmp_path / "table.txt"

    def run(ctx):
        ctx.ran.append("profile")
        made.write_text("measured")
        return Made(1, str(made))

    stage = Stage("profile", (), (), lambda ctx: {"table": made.read_text() if made.exists() else None}, run, Made)
    for expected in (["profile"], []):
        ctx, record = FakeContext(tmp_path, {}), RunRecord(tmp_path, {})
        run_stage(stage, ctx, record, {}, "profile")
        assert ctx.ran == expected


def test_a_damaged_product_in_the_record_is_one_line_naming_the_record_and_stage(tmp_path):
    _build(tmp_path, {"a": 1, "b": 10, "c": 100})
    data = json.loads((tmp_path / RECORD).read_text())
    del data["stages"]["b"]["result"]["value"]
    (tmp_path / RECORD).write_text(json.dumps(data))
    with pytest.raises(BadInput, match=r"build.json \(stage b\).*lacks value"):
        _build(tmp_path, {"a": 1, "b": 10, "c": 100})


def test_every_build_stage_declares_a_product_that_round_trips():
    assert [s.name for s in STAGES] == ["precision", "profile", "train", "search", "prune", "quantize", "compile", "bench"]
    names = {s.name for s in STAGES}
    for s in STAGES:
        assert set(s.after) <= names and hasattr(s.product, "from_dict"), s.name
    figures = NetworkFigures(1000, 10, 0.1, None, 0.9)
    pruned = PrunedProduct("runs/x/fp32", False, figures, figures, [], None, "--prune-ratio 1")
    back = PrunedProduct.from_dict(json.loads(json.dumps(pruned.to_dict())))
    assert back == pruned and isinstance(back.after, NetworkFigures)
    # nested records come back typed from their field types alone: a verdict, a fit and the networks it measured
    from edgenas.compress.pays import Verdict, pruned_from_above_pays
    from edgenas.search.fit import Fit, FitTry
    from edgenas.search.report import SearchReport

    judged = replace(pruned, verdict=pruned_from_above_pays(0.2, 0.1, 0.19, 0.9, 0.91, True))
    back = PrunedProduct.from_dict(json.loads(json.dumps(judged.to_dict())))
    assert back == judged and isinstance(back.verdict, Verdict)
    fit = Fit(0, True, "why", [FitTry("r28", 0.1, 0.9, (0.09, 0.095))])
    report = SearchReport(1, 1.1, 10, 0.1, 0.09, True, 0.9, 0.9, 1, 1, 1, 0.1, 1, {}, "r28", 0.05, {}, "t", "s", "o",
                          "int8", [0.09, 0.095], fit)
    back = SearchReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report and isinstance(back.fit.tried[0], FitTry) and back.fit.tried[0].readings_ms == (0.09, 0.095)


def test_a_bench_product_recorded_before_rechecks_existed_still_reads():
    d = BenchProduct({"ort": {"min_ms": 0.1}}, "ort", "min_ms", 0.1, 0.2, True).to_dict()
    del d["recheck"]
    back = BenchProduct.from_dict(json.loads(json.dumps(d)))
    assert back.recheck is None and back.within_budget is True
    del d["within_budget"]
    with pytest.raises(BadInput, match="lacks within_budget"):
        BenchProduct.from_dict(d)


def test_pipeline_run_takes_only_known_stages_and_needs_what_they_follow(tmp_path):
    """`pipeline.build.run` names a stage it does not know, and one whose predecessors are neither run nor given,
    before it runs anything: a benchmark's typo fails at once, not after an hour's training."""
    from edgenas.pipeline.build import run
    from edgenas.pipeline.config import BuildConfig

    from conftest import TINY_SPACE

    cfg = BuildConfig.from_flags(space=TINY_SPACE, out=tmp_path / "run", budget_ms=1.0)
    with pytest.raises(ValueError, match="no stage 'serach'"):
        run(cfg, only=("serach",))
    with pytest.raises(ValueError, match="no stage 'trian'"):
        run(cfg, only=("search",), given={"trian": None})
    with pytest.raises(ValueError, match="stage search follows profile, train"):
        run(cfg, only=("precision", "search"))
    assert not (tmp_path / "run").exists()


def test_a_summary_and_a_compile_product_written_before_their_types_still_read():
    """summary.json as the build wrote it before the summary was a record (no `budget_used`, `fit`, `search_on_noise`,
    `passed_over`, ...) reads back typed, and writes back with every field; so does a compile product whose `compile`
    was a dict."""
    from edgenas.pipeline.products import CompiledProduct, CompileFacts
    from edgenas.pipeline.summary import Accuracies, BuildSummary, Counts, Stations

    old = {"target": "host", "budget_ms": 0.15, "margin_pct": 3.0, "backend": "tvm", "statistic": "median_ms",
           "runtime": "tvm", "precision": "int8", "precision_why": "asked for", "table": "t.json",
           "predicted_ms": {"searched": 0.1, "pruned": 0.1, "artifact": 0.1},
           "measured_ms": {"searched": 0.11, "pruned": 0.11, "artifact": 0.12}, "artifact_runs": {"tvm": {"median_ms": 0.12}},
           "artifact_readings_ms": [0.12], "within_budget": True,
           "accuracy": {"artifact": 0.97, "searched_fp32": 0.96, "tuned_fp32": None, "pruned_fp32": 0.96, "int8": 0.97,
                        "int8_drop_points": -1.0, "quantize_remedy": "none"},
           "macs": {"searched": 10, "shipped": 10}, "params": {"searched": 5, "shipped": 5}, "files_bytes": {"lib.so": 9},
           "network": "r28", "pruned": False, "artifact": "a", "report": "r.md"}
    sm = BuildSummary.from_dict(old, "summary.json")
    assert isinstance(sm.measured_ms, Stations) and isinstance(sm.accuracy, Accuracies) and isinstance(sm.macs, Counts)
    assert sm.measured_ms.artifact == 0.12 and sm.budget_used is None and sm.passed_over == []
    assert BuildSummary.from_dict(json.loads(json.dumps(sm.to_dict()))) == sm
    with pytest.raises(BadInput, match="summary.json.*lacks network"):
        BuildSummary.from_dict({k: v for k, v in old.items() if k != "network"}, "summary.json")
    compiled = CompiledProduct.from_dict({"product": "compiled", "artifact": "a", "compile": {"runtime": "ort"},
                                          "files_bytes": {}, "measured": None})
    assert compiled.compile == CompileFacts("ort") and CompiledProduct.from_dict(compiled.to_dict()) == compiled


def test_each_stage_fingerprints_the_config_parts_it_reads_and_no_other(tmp_path):
    """A changed flag re-runs exactly the stages that read its part of the config (and, through their fingerprints,
    the stages after them): the inputs of every other stage stay as they were."""
    from conftest import TINY_SPACE
    from edgenas.pipeline.build import open_context
    from edgenas.pipeline.config import BuildConfig
    from edgenas.pipeline.products import PrecisionProduct

    base = BuildConfig.from_flags(space=TINY_SPACE, out=tmp_path / "run", tables=tmp_path / "tables", budget_ms=1.0,
                                  backend="ort", precision="int8")
    changed = {"budget_ms": replace(base, budget_ms=2.0), "train": replace(base, train=replace(base.train, epochs=3)),
               "search": replace(base, search=replace(base.search, subnets=20)),
               "compress": replace(base, compress=replace(base.compress, prune_ratio=0.5)),
               "quantize": replace(base, quantize=replace(base.quantize, calibration=7)),
               "compile": replace(base, compile=replace(base.compile, trials=3)),
               "deploy": replace(base, deploy=replace(base.deploy, repeat=9))}

    def inputs(cfg) -> dict:
        ctx = open_context(cfg)
        ctx.results["precision"] = PrecisionProduct("int8", "asked for", {}, None, backend="ort")
        return {s.name: s.inputs(ctx) for s in STAGES}

    before = inputs(base)
    for part, cfg in changed.items():
        after = inputs(cfg)
        assert {n for n in before if before[n] != after[n]} == {s.name for s in STAGES if part in s.reads}, part
    assert {part for s in STAGES for part in s.reads} == set(changed) | {"data"}
