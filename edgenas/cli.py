"""`edgenas <verb>`: one verb per pipeline stage, with the same flags everywhere and --json for machines.

Exit codes: 0 success, 1 failure during the run, 2 bad usage or input, 130 interrupted (work so far is kept).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from edgenas.cli_deploy import COMMANDS
from edgenas.cli_options import TABLE, TARGET, TUNE, option, options
from edgenas.errors import EdgenasError
from edgenas.jsonio import ensure_writable_dir
from edgenas.measure.timing import MeasureConfig
from edgenas.pipeline.config import BuildConfig, DeployConfig
from edgenas.search.evolution_config import EvolutionConfig
from edgenas.supernet.train_config import TrainConfig
from edgenas.tables.ready import VALIDATE_SAMPLES


def _print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=1))


def _resolve(target, space, tables, rpc_tracker, rpc_key):
    from edgenas.rpc import RPCSettings
    from edgenas.paths import tables_dir
    from edgenas.space import get_space
    from edgenas.targets import get_target

    return get_target(target), get_space(space), tables or tables_dir(), RPCSettings.parse(rpc_tracker, rpc_key)


def _show_versions(ctx, _param, value):
    """--version names every library that makes a figure, not only edgenas."""
    if value and not ctx.resilient_parsing:
        from edgenas.versions import versions

        click.echo("\n".join(f"{k} {v}" for k, v in versions().items()))
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_versions,
              help="Print the versions of edgenas, torch, ONNX, ONNX Runtime and TVM.")
def cli():
    """Hardware-aware deployment compiler: latency tables, latency-constrained NAS, int8 TVM artifacts."""


@cli.command("targets")
@options("json")
def targets_cmd(as_json):
    """List the registered targets."""
    from edgenas.targets import list_targets

    targets = list_targets()
    if as_json:
        return _print_json([t.to_dict() for t in targets])
    for t in targets:
        click.echo(f"{t.name:18s} {t.device:4s} {t.arch:8s} {t.description}")


@cli.command("spaces")
@options("json")
def spaces_cmd(as_json):
    """List the registered search spaces."""
    from edgenas.space import list_spaces

    spaces = list_spaces()
    if as_json:
        return _print_json([{**s.to_dict(), "hash": s.hash, "table_entries": len(s.all_layers())} for s in spaces])
    for s in spaces:
        click.echo(f"{s.name:18s} {len(s.all_layers()):5d} blocks  {s.description}")


def _key(target, backend, precision, space, threads, rpc, layout, tuning_db):
    from edgenas.tables.key import TableKey

    return TableKey(target, backend, precision, space, threads or target.thread_count(), rpc, layout, tuning_db)


def _backends(choice: str, target, rpc) -> list[str]:
    if choice != "all":
        return [choice]
    from edgenas.measure.backends import reachable_backends

    found, passed = reachable_backends(target, rpc)  # ONNX Runtime and OpenVINO measure only the machine they run on
    if passed and rpc is None and target.runs_here:
        click.echo("edgenas: passed over " + "; ".join(passed), err=True)
    return found


@cli.command("profile")
@options(*TARGET)
@option("backend", all_backends=True)
@click.option("--resume", is_flag=True, help="Keep the existing table and measure only its missing entries.")
@click.option("--overwrite", is_flag=True, help="Measure every entry again.")
@click.option("--full", is_flag=True, help="Measure every block: no adapting from other devices' tables, and an adapted "
                                           "table's adapted entries measured.")
def profile_cmd(target, space, tables, threads, repeat, rpc_tracker, rpc_key, as_json, precision, layout, tuning_db, backend,
                resume, overwrite, full):
    """Measure the blocks of the space on the target into this device's latency table.

    With no table for this device yet, a few blocks are measured and the rest adapted from the complete tables of
    other devices for the same space and backend (--full measures them all)."""
    from edgenas.tables.profile import profile

    tgt, spc, tdir, rpc = _resolve(target, space, tables, rpc_tracker, rpc_key)
    ensure_writable_dir(tdir, "--tables")
    results = [
        profile(_key(tgt, b, precision, spc, threads, rpc, layout, tuning_db), tdir, resume=resume, overwrite=overwrite,
                full=full, cfg=MeasureConfig.for_backend(b, repeat)).to_dict()
        for b in _backends(backend, tgt, rpc)
    ]
    if as_json:
        return _print_json(results)
    for r in results:
        adapted = f", {r['adapted']} adapted" if r["adapted"] else ""
        click.echo(f"{r['table']}: {r['entries']} entries ({r['measured']} measured now, {r['reused']} kept{adapted}) "
                   f"in {r['seconds']:.1f} s")


@cli.command("validate")
@options(*TARGET)
@option("backend", all_backends=True)
@click.option("--samples", "-n", type=click.IntRange(min=1), default=VALIDATE_SAMPLES, show_default=True,
              help="Random networks to measure; half fit the correction, half test it.")
@options("seed")
def validate_cmd(target, space, tables, threads, repeat, rpc_tracker, rpc_key, as_json, precision, layout, tuning_db, backend,
                 samples, seed):
    """Measure random whole networks, compare with the table, and fit its end-to-end correction.

    With no table for this device (or one measured with other kernels), it is profiled first."""
    from edgenas.tables.ready import measured_table
    from edgenas.tables.validate import check_samples, validate

    check_samples(samples)
    tgt, spc, tdir, rpc = _resolve(target, space, tables, rpc_tracker, rpc_key)
    ensure_writable_dir(tdir, "--tables")  # the table's correction, the report, the plot and the measured networks
    reports = []
    for b in _backends(backend, tgt, rpc):
        key, cfg = _key(tgt, b, precision, spc, threads, rpc, layout, tuning_db), MeasureConfig.for_backend(b, repeat)
        measured_table(key, tdir, cfg)
        reports.append(validate(key, tdir, samples, seed=seed, cfg=cfg).to_dict())
    if as_json:
        return _print_json(reports)
    for r in reports:
        click.echo(f"{r['table']}: {r['samples']} networks, correction fitted on {r['train']}, tested on {r['held_out']}")
        for name in ("raw", "corrected"):
            m = r[name]
            click.echo(
                f"  {name:9s} RMSE {m['rmse_ms']:.4f} ms  RMSPE {m['rmspe']:.1%}  within ±5% {m['within_5pct']:.0%}  "
                f"±10% {m['within_10pct']:.0%}  Kendall τ {m['kendall_tau']:.3f}"
            )
        click.echo(f"  report {r['report']}\n  plot   {r['plot']}")


@cli.command("train")
@options("data", "space", "epochs")
@option("out")
@click.option("--batch-size", type=click.IntRange(min=2), default=TrainConfig.batch_size, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.lr, show_default=True)
@options("seed", "limit")
@click.option("--resize", type=click.IntRange(min=4), default=None, help="Resize folder images to N x N.")
@options("json")
def train_cmd(data, space, epochs, out, batch_size, lr, seed, limit, resize, as_json):
    """Train the weight-sharing supernet on a data set into the run directory OUT (resumes from the last finished epoch)."""
    from edgenas.data import load_dataset
    from edgenas.space import get_space
    from edgenas.space.fit import follow_dataset
    from edgenas.supernet.train import train

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit=limit)
    ensure_writable_dir(out, "--out")
    fitted, note = follow_dataset(get_space(space), load_dataset(data, resize))
    if note:
        click.echo(f"edgenas train: {note}", err=True)
    r = train(data, fitted, out, cfg, resize=resize).to_dict()
    if as_json:
        return _print_json(r)
    for h in r["history"][r["resumed_from_epoch"]:]:
        click.echo(f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  val acc largest {h['val_acc_largest']:.4f}  "
                   f"smallest {h['val_acc_smallest']:.4f}  {h['seconds']:.1f} s")
    click.echo(f"{r['run_dir']}: {r['epochs']} epochs, {r['seconds']:.1f} s (resumed after epoch {r['resumed_from_epoch']})")


@cli.command("search")
@options("target", "backend", "budget-ms", "supernet", "tables", "threads")
@option("out", default=None, show_default="RUN_DIR/search-TARGET-BACKEND-BUDGETms")
@click.option("--max-params", type=click.IntRange(min=1), default=None, help="Also cap the number of parameters.")
@options("seed", "strategy", "population")
@click.option("--parent-ratio", type=click.FloatRange(0, 1, min_open=True), default=EvolutionConfig.parent_ratio, show_default=True)
@click.option("--mutation-ratio", type=click.FloatRange(0, 1), default=EvolutionConfig.mutation_ratio, show_default=True,
              help="Share of each generation made by mutation; the rest after the parents is crossover.")
@click.option("--mutate-prob", type=click.FloatRange(0, 1), default=EvolutionConfig.mutate_prob, show_default=True)
@options("generations", "subnets", "margin-pct")
@click.option("--no-measure", is_flag=True, help="Trust the table: search to the budget less its guard band, and measure nothing (else the most accurate network that measures within the budget wins).")
@options(*TABLE, "json")
def search_cmd(target, backend, budget_ms, run_dir, tables, threads, out, max_params, seed, strategy, population, parent_ratio,
               mutation_ratio, mutate_prob, generations, subnets, margin_pct, no_measure, precision, layout, tuning_db, as_json):
    """Find the most accurate network within a latency budget on a target.

    Latency comes from this device's table at the precision that ships; with none, it is profiled first."""
    from edgenas.paths import tables_dir
    from edgenas.search.search import run_space, search
    from edgenas.targets import get_target

    if parent_ratio + mutation_ratio > 1:
        raise click.BadParameter(f"--parent-ratio {parent_ratio} + --mutation-ratio {mutation_ratio} exceeds 1")
    cfg = EvolutionConfig(strategy, population, parent_ratio, mutation_ratio, mutate_prob, generations, seed)
    tgt = get_target(target)
    if out is not None:
        ensure_writable_dir(out, "--out")  # before anything reads the inputs
    key = _key(tgt, backend, precision, run_space(run_dir), threads, None, layout, tuning_db)
    out = out or ensure_writable_dir(Path(run_dir) / f"search-{tgt.name}-{key.name}-{budget_ms:g}ms", "--out")
    r = search(run_dir, key, budget_ms, tables or tables_dir(), out, config=cfg, subnets=subnets,
               max_params=max_params, measure=not no_measure, margin_pct=margin_pct).to_dict()
    if as_json:
        return _print_json(r)
    measured = "not measured" if r["measured_latency_ms"] is None else f"{r['measured_latency_ms']:.4f} ms measured"
    click.echo(f"best {r['encoding']}\n  {r['precision']} latency {r['predicted_latency_ms']:.4f} ms predicted, {measured} "
               f"(budget {r['budget_ms']:g} ms, searched to {r['search_budget_ms']:.4f} ms with a {r['margin_pct']:.1f}% "
               f"band)\n  {r['fit']['why'] + chr(10) + '  ' if r['fit'] else ''}validation accuracy {r['val_accuracy']:.4f} (predicted {r['predicted_accuracy']:.4f}), "
               f"{r['params']} parameters\n  {r['evaluated']} candidates ({r['unique']} distinct) in {r['search_seconds']:.2f} s; "
               f"{r['seconds']:.1f} s in all; outputs in {r['out_dir']}")


@cli.command("build")
@options(*[o for o in TARGET if o != "precision"])
@option("precision", auto_precision=True, default=DeployConfig.precision)
@options("budget-ms", "data")
@option("backend", auto_backend=True, default=DeployConfig.backend)
@option("out", default=BuildConfig.out, show_default=True)
@options("epochs", "limit", "subnets", "strategy", "generations", "population", "margin-pct", "prune-ratio")
@options("finetune-epochs")
@options("calibration", "max-drop", *TUNE)
def build_cmd(as_json, **flags):
    """The whole journey: profile (if needed), train, search, prune, quantize, compile and bench, resumable.

    OUT is the run directory: the same command resumes it, and changed flags re-run only the stages they affect."""
    from edgenas.pipeline.build import build, check_budget_met
    from edgenas.pipeline.report import table_text

    r = build(BuildConfig.from_flags(**flags))
    if as_json:
        _print_json(r.to_dict())
    else:
        click.echo(table_text(r.summary))
        click.echo(f"{r.seconds:.0f} s in all; stages: " +
                   ", ".join(f"{n} {s['status']}" + (f" ({s['seconds']:.0f} s)" if s.get("seconds") else "") for n, s in r.stages.items()))
    check_budget_met(r.summary)


for _cmd in COMMANDS:
    cli.add_command(_cmd)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="edgenas", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:  # bad usage: one line too, with where to look
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"edgenas: error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("edgenas: interrupted", err=True)
        sys.exit(130)
    except EdgenasError as e:
        click.echo(f"edgenas: error: {e}", err=True)
        sys.exit(e.exit_code)
    except Exception as e:  # a bug, not bad input: one line unless the user asks for the traceback
        if os.environ.get("EDGENAS_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        click.echo(f"edgenas: internal error: {type(e).__name__}: {first} (set EDGENAS_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)
