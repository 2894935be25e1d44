"""`edgenas build`: profile -> train -> search -> prune -> quantize -> compile -> bench, resumable stage by stage."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgenas.errors import EdgenasError, Interrupted
from edgenas.jsonio import atomic_write_json, ensure_writable_dir, exclusive_lock, read_json
from edgenas.pipeline.config import BuildConfig
from edgenas.pipeline.report import write_report
from edgenas.pipeline.rundir import RECORD, RunRecord, fingerprint
from edgenas.pipeline.stages import STAGES, Context, check_reachable
from edgenas.pipeline.summary import BuildSummary, summarize
from edgenas import progress
from edgenas.progress import bar
from edgenas.records import Record

SUMMARY = "summary.json"


@dataclass(frozen=True)
class BuildResult(Record):
    """What `build` returns and writes to summary.json (docs/schemas.md, "Build summary")."""
    run_dir: str
    seconds: float
    summary: BuildSummary
    #: stage -> its status, seconds, runs and when it finished, from the run record
    stages: dict[str, dict]
    report: str


def open_context(cfg: BuildConfig) -> Context:
    from edgenas.rpc import RPCSettings
    from edgenas.paths import tables_dir
    from edgenas.space import get_space
    from edgenas.targets import get_target

    target = get_target(cfg.deploy.target)
    ensure_writable_dir(cfg.out, "--out")
    return Context(cfg, Path(cfg.out), target, space_for_data(get_space(cfg.space), cfg.data), Path(cfg.tables or tables_dir()),
                   RPCSettings.parse(cfg.deploy.rpc_tracker, cfg.deploy.rpc_key), cfg.deploy.threads or target.thread_count())


def space_for_data(space, data_spec: str):
    """The space as it fits the data (`space.fit`), said in one line when that changed it. Reads the data set (once per
    process: every later stage asks for it again), so that a bad data file fails before any stage runs."""
    from edgenas.data import load_dataset
    from edgenas.space.fit import follow_dataset

    fitted, note = follow_dataset(space, load_dataset(data_spec))
    if note:
        say(note)
    return fitted


def say(message: str) -> None:
    progress.say(message, "edgenas build")


def run_stage(stage, ctx: Context, record: RunRecord, fps: dict, tag: str) -> None:
    """Skip the stage when it finished on the same inputs, else run it (resuming its own saved progress)."""
    def stage_fp() -> str:
        return fingerprint({"stage": stage.name, "inputs": stage.inputs(ctx), "after": {d: fps[d] for d in stage.after}})

    fps[stage.name] = stage_fp()
    done = record.finished(stage.name, fps[stage.name])
    if done:
        ctx.results[stage.name] = stage.product.from_dict(done["result"], f"{record.path} (stage {stage.name})")
        return say(f"{tag}: reused (finished {done['finished']})")
    if not record.start(stage.name, fps[stage.name]):
        for d in stage.outputs:  # other inputs: nothing of the old output may leak into the new one
            shutil.rmtree(ctx.out / d, ignore_errors=True)
    say(f"{tag}: running")
    t0 = time.perf_counter()
    try:
        result = stage.run(ctx)
    except (KeyboardInterrupt, Interrupted):
        raise Interrupted(f"interrupted in stage {stage.name}; the finished stages and its saved progress are in "
                          f"{ctx.out}: run the same command to resume") from None
    fps[stage.name] = stage_fp()  # a stage may make its own input (profile: the table it measured)
    record.stages[stage.name]["fingerprint"] = fps[stage.name]
    record.finish(stage.name, result.to_dict(), time.perf_counter() - t0)
    ctx.results[stage.name] = result
    say(f"{tag}: done in {time.perf_counter() - t0:.1f} s")


def build(cfg: BuildConfig) -> BuildResult:
    ctx = open_context(cfg)
    record = RunRecord(ctx.out, cfg.to_dict())
    fps: dict[str, str] = {}
    started = time.perf_counter()
    ctx.check_inputs()
    with exclusive_lock(ctx.out / RECORD), bar(len(STAGES), "build", unit="stage") as progress:
        for i, stage in enumerate(STAGES):
            tag = f"[{i + 1}/{len(STAGES)}] {stage.name}"
            progress.set_description(f"build {tag}")
            run_stage(stage, ctx, record, fps, tag)
            progress.update()
            if stage.name == "profile":
                check_reachable(ctx)
    sm = summarize(ctx.results, ctx.out, ctx.target.name)
    validation_path = ctx.table.with_suffix(".validation.json")
    report = write_report(ctx.out, sm, record.stages, read_json(validation_path) if validation_path.exists() else None)
    result = BuildResult(str(ctx.out), round(time.perf_counter() - started, 2), sm,
                         {n: {k: r.get(k) for k in ("status", "seconds", "runs", "finished")} for n, r in record.stages.items()},
                         str(report))
    atomic_write_json(ctx.out / SUMMARY, result.to_dict())
    return result


def run(cfg: BuildConfig, only=None, given: dict | None = None) -> Context:
    """The build's stages in one process, with nothing recorded: `only` these (in the build's order; by default every
    stage not `given`), on the products `given` for the ones they follow (a supernet trained already, a precision
    chosen, a pruned network). What a benchmark or a test runs instead of driving stages itself: many budgets and
    strategies on one training, through the build's own code. The context holds every product."""
    given = dict(given or {})
    names = [s.name for s in STAGES]
    wanted = set(names) - set(given) if only is None else set(only)
    if unknown := sorted(set(given) - set(names) | wanted - set(names)):
        raise ValueError(f"no stage {unknown[0]!r}: the stages are {', '.join(names)}")
    stages, have = [s for s in STAGES if s.name in wanted], set(given)
    for stage in stages:  # checked before anything runs
        needs = (*stage.after, *(() if stage.name in ("precision", "train") else ("precision",)))  # precision: what ships
        if missing := [d for d in needs if d not in have]:
            raise ValueError(f"stage {stage.name} follows {', '.join(missing)}: run it too, or give its product")
        have.add(stage.name)
    ctx = open_context(cfg)
    ctx.results.update(given)
    for stage in stages:
        ctx.results[stage.name] = stage.run(ctx)
    return ctx


def trained(supernet: Path):
    """The train stage's product for a supernet trained already (by `edgenas train`, or an earlier build)."""
    from edgenas.pipeline.products import SupernetProduct
    from edgenas.supernet.train import load_run

    r = load_run(supernet)
    last = r["history"][-1]
    return SupernetProduct(str(supernet), r["epochs_done"], r["epochs_done"], 0.0, last["val_acc_largest"],
                           last["val_acc_smallest"])


#: a build's stages after its training: the table's (as asked, or made when missing) and everything after the training
AFTER_TRAINING = ("precision", "profile", "search", "prune", "quantize", "compile", "bench")


def check_budget_met(sm: BuildSummary) -> None:
    """The promise: the artifact, measured on the target, within the budget; everything is kept either way."""
    if sm.within_budget is False:
        readings = ", ".join(f"{v:.4f}" for v in sm.artifact_readings_ms)
        raise EdgenasError(f"the artifact measured {readings} ms ({sm.statistic}) on {sm.target} with {sm.backend}, "
                           f"over the {sm.budget_ms:g} ms budget; the artifact and {sm.report} are kept")
