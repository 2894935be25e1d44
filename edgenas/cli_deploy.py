"""The shipping verbs: export -> (prune) -> quantize -> compile -> run / bench. Registered by edgenas.cli."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgenas.cli_options import MEASURE, TUNE, options
from edgenas.compile.build import CompileConfig
from edgenas.compress.prune_config import DistillConfig, PruneConfig
from edgenas.compress.quantize import METHODS, QuantizeConfig
from edgenas.errors import BadInput
from edgenas.jsonio import ensure_writable_dir
from edgenas.measure.timing import MeasureConfig

def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=1))


@click.command("export")
@click.argument("search", type=click.Path(path_type=Path))
@options("out", "eval-threads", "json")
def export_cmd(search, out, eval_threads, as_json):
    """Write the network a search found (SEARCH: its directory or best.json) as a model bundle: model.onnx + model.json."""
    ensure_writable_dir(out, "--out")
    from edgenas.search.export import export_search

    info = export_search(search, out, eval_threads)
    if as_json:
        return _echo_json({"out_dir": str(out), **info.to_dict()})
    click.echo(f"{out}: {info.arch.encoding}, fp32 validation accuracy {info.accuracy['fp32']:.4f}")


@click.command("prune")
@click.argument("model", type=click.Path(path_type=Path))
@options("out")
@click.option("--target-ms", type=float, default=None,
              help="Predicted latency to reach, in milliseconds (instead of --prune-ratio).")
@options("prune-ratio")
@click.option("--steps-ms", "step_ms", type=float, default=None,
              help="Latency each pruning step removes [default: a fifth of the way to the target].")
@options("finetune-epochs")
@click.option("--candidate-steps", type=click.IntRange(min=1), default=PruneConfig.candidate_steps, show_default=True,
              help="Distillation steps each candidate gets before it is scored.")
@options("eval-threads", "json")
def prune_cmd(model, out, target_ms, prune_ratio, step_ms, finetune_epochs, candidate_steps, eval_threads, as_json):
    """Prune a model bundle's channels toward a latency target (NetAdapt, distilled from the supernet); resumable."""
    given = click.get_current_context().get_parameter_source("prune_ratio") is not click.core.ParameterSource.DEFAULT
    if not given:
        prune_ratio = None  # the default (1) prunes nothing; both given is refused by PruneConfig
        if target_ms is None:
            raise BadInput("give --target-ms or --prune-ratio (below 1): how far to prune")
    if prune_ratio is not None and prune_ratio >= 1:
        raise BadInput(f"--prune-ratio {prune_ratio:g}: `prune` needs a ratio below 1 (in `build`, 1 prunes only to fit)")
    cfg = PruneConfig(target_ms=target_ms, ratio=prune_ratio, step_ms=step_ms, candidate_steps=candidate_steps,
                      distill=DistillConfig(epochs=finetune_epochs))  # checks the flags before torch loads
    ensure_writable_dir(out, "--out")
    from edgenas.compress.prune import prune
    from edgenas.compress.prune_input import load_prune_input

    r = prune(load_prune_input(model, out), out, cfg, eval_threads).to_dict()
    if as_json:
        return _echo_json(r)
    b, a = r["before"], r["after"]
    measured = (f", measured {b['measured_ms']:.4f} -> {a['measured_ms']:.4f} ms" if a["measured_ms"] is not None
                else f" (not measured: {r['not_measured']})")
    click.echo(f"{out}: predicted {b['predicted_ms']:.4f} -> {a['predicted_ms']:.4f} ms (target {r['target_ms']:.4f}){measured}, "
               f"MACs {b['macs']:,} -> {a['macs']:,}, parameters {b['params']:,} -> {a['params']:,}, validation accuracy "
               f"{b['val_accuracy']:.4f} -> {a['val_accuracy']:.4f} ({len(r['steps'])} steps, {r['seconds']:.0f} s)")


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@options("out", "calibration")
@click.option("--method", type=click.Choice(METHODS), default=QuantizeConfig.method, show_default=True,
              help="Calibration method tried first.")
@click.option("--symmetric", is_flag=True, help="Zero points all 0, int8 activations (for TensorRT-style consumers, Jetson).")
@options("max-drop", "target", "backend", "layout", "tuning-db", "eval-threads", "json")
def quantize_cmd(model, out, calibration, method, symmetric, max_drop, target, backend, layout, tuning_db, eval_threads, as_json):
    """Quantize a model bundle to int8 (ONNX QDQ), gated on the int8 accuracy of what ships: the TVM library for the
    target (--backend tvm), or the ONNX model in ONNX Runtime (--backend ort)."""
    from edgenas.targets import get_target

    tgt = get_target(target)
    cfg = QuantizeConfig(calibration, method, symmetric, max_drop)
    ensure_writable_dir(out, "--out")
    from edgenas.accuracy import Evaluator
    from edgenas.compress.quantize import quantize

    judge = Evaluator.for_backend(backend, tgt, layout, tuning_db, eval_threads)
    r = quantize(model, out, cfg, eval_threads, judge).to_dict()
    if as_json:
        return _echo_json(r)
    click.echo(f"{out}: int8 validation accuracy {r['int8_accuracy']:.4f} ({r['evaluated_with']['runtime']}) against fp32 {r['fp32_accuracy']:.4f} "
               f"({r['drop_points']:+.2f} points lost; remedy: {r['remedy']}; {len(r['attempts'])} attempt(s), "
               f"{r['seconds']:.1f} s)")


def _shape(_ctx, _param, value):
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of dimensions such as 1,3,224,224") from None
    if any(v < 1 for v in shape):
        raise click.BadParameter(f"'{value}': every dimension must be at least 1")
    return shape


@click.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@options("target", "out", "backend", *TUNE, "layout", "tuning-db")
@click.option("--input-shape", callback=_shape, default=None, metavar="N,C,H,W", help="Fix a model's dynamic input shape.")
@options(*MEASURE, "json")
def compile_cmd(model, target, out, backend, tune_trials, tune_minutes, layout, tuning_db, input_shape, threads, rpc_tracker,
                repeat, rpc_key, as_json):
    """Compile an ONNX model (a bundle or any .onnx file) with TVM into an artifact for the target, and measure it;
    with --backend ort or openvino, package a model bundle for that runtime instead (it compiles when it loads)."""
    from edgenas.artifact.package import package, package_onnx
    from edgenas.rpc import RPCSettings
    from edgenas.targets import get_target

    tgt = get_target(target)
    rpc = RPCSettings.parse(rpc_tracker, rpc_key)
    ensure_writable_dir(out, "--out")
    if backend != "tvm":
        if rpc is not None:
            raise BadInput(f"--backend {backend} runs on this machine only; a board over RPC needs --backend tvm")
        art = package_onnx(model, tgt, out, backend, MeasureConfig.for_backend(backend, repeat), threads or tgt.thread_count())
        if as_json:
            return _echo_json({"artifact": str(art.path), **art.meta.to_dict()})
        m = art.meta.latency.measured
        click.echo(f"{art.path}: {backend} artifact for {tgt.name}: latency {m['median_ms']:.4f} ms median on {m['where']}, "
                   f"validation accuracy {art.meta.accuracy.get('artifact', float('nan')):.4f} (run with {backend})")
        return
    cfg = CompileConfig(tune_trials, layout, tuning_db, input_shape, tune_minutes, rpc)
    art = package(model, tgt, out, cfg, MeasureConfig.for_backend("tvm", repeat),
                  threads or tgt.thread_count(), rpc)
    if as_json:
        return _echo_json({"artifact": str(art.path), **art.meta.to_dict()})
    m, c = art.meta.latency.measured, art.meta.compile
    t = c.tuning
    tuning = (f"tuned {t['tuned']} of {t['tasks']} tasks ({t['trials']} trials), reused {t['reused']}" if t
              else "no tuning")
    click.echo(f"{art.path}: {'int8' if c.quantized else 'float'} model for {tgt.name}, compiled in {c.seconds:.1f} s "
               f"({tuning}; database {c.tuning_database})")
    click.echo(f"  latency {m['median_ms']:.4f} ms median on {m['where']}" if m else f"  {art.meta.latency.not_measured}")
    if (own := art.meta.accuracy.get("artifact")) is not None:
        click.echo(f"  validation accuracy {own:.4f} (the library itself, run here)")


@click.command("run")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path), required=True,
              help="An image, a uint8 image array (.npy), or a preprocessed float .npy.")
@options("json")
def run_cmd(artifact, input_path, as_json):
    """Check an artifact's files, load it with its runtime (TVM, ONNX Runtime or OpenVINO), and print the prediction."""
    import numpy as np

    from edgenas.artifact.artifact import load_artifact
    from edgenas.artifact.runtime import predict, read_input

    art = load_artifact(artifact)
    logits = predict(art, read_input(input_path, art)).reshape(-1)
    top = int(np.argmax(logits))
    classes = art.meta.classes
    label = classes[top] if classes and top < len(classes) else str(top)
    if as_json:
        return _echo_json({"class_index": top, "label": label, "logits": [float(v) for v in logits]})
    click.echo(f"{label} (class {top}, logit {logits[top]:.3f})")


@click.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@options(*MEASURE, "json")
def bench_cmd(artifact, threads, rpc_tracker, repeat, rpc_key, as_json):
    """Measure an artifact's latency here with its runtime, or a TVM library's on a board over TVM RPC (uploaded)."""
    from edgenas.artifact.artifact import load_artifact
    from edgenas.artifact.runtime import bench
    from edgenas.rpc import RPCSettings

    art = load_artifact(artifact)
    r = bench(art, MeasureConfig.for_backend(art.meta.runtime, repeat), threads, RPCSettings.parse(rpc_tracker, rpc_key))
    if as_json:
        return _echo_json(r)
    click.echo(f"{art.path}: {r['median_ms']:.4f} ms median (min {r['min_ms']:.4f}, {r['count']} samples) on {r['where']}")


COMMANDS = (export_cmd, prune_cmd, quantize_cmd, compile_cmd, run_cmd, bench_cmd)
