"""`edgenas prune`: structured channel pruning of an exported network toward a latency target, after NetAdapt.

Each step asks for `step_ms` less predicted latency. For every prunable unit (an MBConv block's mid channels,
shared by its expand, depthwise, squeeze-excite and project convolutions, and the head's 1x1 expansion) the
candidate removes the fewest channels, smallest group L2 magnitude first, that reach it on the latency table.
Each candidate is distilled briefly from the supernet's largest network and scored on training images held
out of fine-tuning, and the most accurate one is kept: NetAdapt's rule (its candidates all save at least the
step, so accuracy alone decides; the held-out cross-entropy breaks ties). Torch-Pruning's dependency graph does the
slicing, so coupled layers always move together. A longer distillation, BatchNorm recalibration and the
ONNX export follow, with MACs, parameters, predicted and measured latency and validation accuracy before and
after. A checkpoint after every step (and fine-tuning epoch) lets an interrupted run resume.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from edgenas.accuracy import ort_accuracy
from edgenas.bundle import write_bundle
from edgenas.compress.candidate_pool import as_bytes, candidate_pool, from_bytes, try_candidate, try_candidate_in_worker
from edgenas.compress.distiller import Distiller
from edgenas.compress.prune_config import PruneConfig
from edgenas.compress.prune_input import PruneInput
from edgenas.compress.surgery import macs_params, mid_channels, prune_unit
from edgenas.errors import BadInput, EdgenasError, Interrupted
from edgenas.jsonio import exclusive_lock
from edgenas.measure.onnx_export import to_onnx
from edgenas.progress import bar
from edgenas.measure.shipped import measure_ms
from edgenas.space.space import LayerSpec
from edgenas.supernet.evaluate import recalibrate_bn
from edgenas.supernet.train import resume_checkpoint, save_checkpoint
from edgenas.tables.pruned_latency import PrunedLatency, fastest_channels

STATE = "prune-state.pt"


class OutOfReach(EdgenasError):
    """No pruning reaches the target on the table: a build then ships the searched network as it is."""


# ---- NetAdapt ----------------------------------------------------------------------------------------
def candidates(latency: PrunedLatency, channels: dict[int, int], goal: float, multiple: int) -> dict[int, tuple[float, int]]:
    """Per unit, the most mid channels (a multiple of `multiple`) that bring the prediction to `goal`:
    {layer: (predicted ms, channels)}. When no unit reaches it alone, every unit at its fewest channels."""
    reach, lowest, now = {}, {}, latency(channels)
    for i, c in channels.items():
        options = [(latency({**channels, i: k}), k) for k in range(c - (c % multiple or multiple), min(multiple, c) - 1, -multiple)]
        hit = next((o for o in options if o[0] <= goal), None)
        if hit:
            reach[i] = hit
        elif options and options[-1][0] < now:
            lowest[i] = options[-1]
    return reach or lowest


def _identity(onnx_model: bytes, cfg: PruneConfig) -> dict:
    return {"source": hashlib.sha256(onnx_model).hexdigest()[:16], **cfg.to_dict()}


def _rebuild(net: nn.Module, state: dict) -> nn.Module:
    """The checkpoint's network: the same units pruned to its channel counts, then its weights."""
    for i, c in state["channels"].items():
        if c < net[i].expand[0].out_channels:
            prune_unit(net, i, c)
    net.load_state_dict(state["model"])
    return net


@dataclass(frozen=True)
class PruneReport:
    """What `prune` did, recorded in the pruned bundle's history and printed by `edgenas prune --json`."""
    out_dir: str
    source: str  # the exported model.onnx pruning started from
    target_ms: float
    step_ms: float
    table: str
    before: dict  # macs, params, predicted_ms, measured_ms, val_accuracy
    after: dict
    units: list  # per prunable unit: layer, unit key, mid channels before and after
    steps: list  # NetAdapt's steps, each with every candidate it tried
    fastest_ms: float  # predicted with every unit at its fewest channels
    not_measured: str | None  # why the latencies were not measured
    resumed_from_step: int
    config: dict
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _goal(latency: PrunedLatency, channels: dict[int, int], cfg: PruneConfig, source: Path) -> tuple[float, float, float]:
    """The unpruned prediction, the target, and the fastest any pruning reaches; fails before any work if out of reach."""
    start_ms = latency(channels)
    if cfg.target_ms is None and cfg.ratio is None:
        raise BadInput("give --target-ms or --prune-ratio: how far to prune")
    goal = cfg.target_ms if cfg.target_ms is not None else cfg.ratio * start_ms
    if goal >= start_ms:
        raise BadInput(f"--target-ms {goal:g}: {source} is already predicted at {start_ms:.4f} ms; nothing to prune")
    fastest = latency(fastest_channels(latency, channels, cfg.multiple))
    if fastest > goal:
        raise OutOfReach(f"target {goal:.4f} ms is out of reach: with every unit at its fastest channel count (multiples "
                         f"of {cfg.multiple}) the network is predicted at {fastest:.4f} ms (from {start_ms:.4f} ms), the "
                         f"fastest pruning reaches")
    return start_ms, goal, fastest


def _figures(inp: PruneInput, net: nn.Module, onnx_model: bytes, predicted_ms: float, threads: int,
             measured_ms: float | None = None) -> dict:
    """A network's MACs, parameters, predicted and measured latency (measured as the table measures, when it can be
    here and `measured_ms` is not known already) and ONNX Runtime validation accuracy."""
    if measured_ms is None and inp.key is not None:
        measured_ms = measure_ms(onnx_model, inp.info.input_shape, inp.key)
    return {**dict(zip(("macs", "params"), macs_params(net))), "predicted_ms": predicted_ms, "measured_ms": measured_ms,
            "val_accuracy": ort_accuracy(onnx_model, inp.info, inp.searched.evaluator.split, threads)}


def prune(inp: PruneInput, out: Path, cfg: PruneConfig, threads: int = 1) -> PruneReport:
    """Prune `inp` into the bundle `out`; `threads` for training and the accuracy checks. One by default: on a shared
    2-core machine, two threads of these small networks ran 25x slower than one (OpenMP waits)."""
    start = time.perf_counter()
    torch.set_num_threads(threads)
    evaluator, info = inp.searched.evaluator, inp.info
    split, space = evaluator.split, evaluator.supernet.space
    net = copy.deepcopy(inp.searched.net).to(memory_format=torch.channels_last)  # the caller's network stays as it is
    specs, arch = net.layer_specs, net.arch
    latency = PrunedLatency(inp.table, space, specs, cfg.multiple)
    start_channels = mid_channels(net)
    start_ms, goal, fastest = _goal(latency, start_channels, cfg, inp.source)
    step_ms = cfg.step_ms or (start_ms - goal) / cfg.steps

    out = Path(out)
    state_path = out / STATE
    with exclusive_lock(state_path):
        state = resume_checkpoint(state_path, _identity(inp.onnx_model, cfg), ("steps", "channels", "model"), "pruning",
                                  "delete it to prune from the start")
        if state is not None:
            net = _rebuild(net, state)
        else:  # the search measured this network with this table's backend, as `_figures` would: not again
            searched_ms = info.latency.measured_ms if inp.key is not None else None
            state = {"identity": _identity(inp.onnx_model, cfg), "steps": [], "finetune": None, "seconds": 0.0,
                     "before": _figures(inp, net, inp.onnx_model, start_ms, threads, searched_ms)}
        resumed_from = len(state["steps"])
        distiller = Distiller(evaluator.network(space.largest()), split, cfg.distill, arch.resolution)
        t0 = start

        def checkpoint() -> None:
            nonlocal t0
            t0, elapsed = time.perf_counter(), time.perf_counter() - t0
            state.update(channels=mid_channels(net), model=net.state_dict(), seconds=state["seconds"] + elapsed)
            save_checkpoint(state_path, state)

        try:
            checkpoint()
            while latency(mid_channels(net)) > goal:
                net = _netadapt_step(net, latency, distiller, cfg, goal, step_ms, state["steps"], specs)
                checkpoint()
            distiller.finetune(net, cfg.distill.epochs, state, checkpoint)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: {len(state['steps'])} pruning step(s) are saved in {state_path}; "
                              f"run the same command to resume") from None
        recalibrate_bn(net, distiller.cal)
        pruned = to_onnx(net.to(memory_format=torch.contiguous_format), info.input_shape)
        channels = mid_channels(net)
        report = PruneReport(
            str(out), str(inp.source.resolve()), goal, step_ms, str(inp.table.path), state["before"],
            _figures(inp, net, pruned, latency(channels), threads),
            [{"layer": i, "unit": specs[i].key, "before": c, "after": channels[i]} for i, c in start_channels.items()],
            state["steps"], fastest, inp.not_measured, resumed_from, cfg.to_dict(),
            round(state["seconds"] + time.perf_counter() - t0, 2))
        record = {k: v for k, v in report.to_dict().items() if k != "out_dir"}
        write_bundle(out, pruned, info.then(
            "prune", arch=info.arch.pruned(start_channels, channels), accuracy={"fp32": report.after["val_accuracy"]},
            latency=replace(info.latency, predicted_ms=report.after["predicted_ms"], measured_ms=report.after["measured_ms"]),
            record=record))
        state_path.unlink()
    return report


def _netadapt_step(net, latency: PrunedLatency, distiller: Distiller, cfg: PruneConfig, goal: float, step_ms: float,
                   steps: list, specs: list[LayerSpec]) -> nn.Module:
    """One NetAdapt step: every unit's candidate, briefly distilled and scored; the most accurate is returned."""
    t0, k = time.perf_counter(), len(steps) + 1
    channels = mid_channels(net)
    step_goal = max(goal, latency(channels) - step_ms)
    options = candidates(latency, channels, step_goal, cfg.multiple)
    if not options:
        raise EdgenasError(f"no unit can be pruned further at {latency(channels):.4f} ms predicted; the target is out of reach")
    batches = list(distiller.batches(cfg.candidate_steps, torch.Generator().manual_seed(cfg.distill.seed * 1_000_003 + k * 1009)))
    tried = []
    with bar(len(options), f"prune step {k}", unit="net") as progress:
        pool = candidate_pool(distiller, len(options))
        with pool or contextlib.nullcontext():
            if pool is not None:
                data, shared = as_bytes(net), as_bytes(batches)
                futures = {i: pool.submit(try_candidate_in_worker, data, i, keep, shared) for i, (_, keep) in options.items()}
            for i, (ms, keep) in options.items():
                cand, acc, loss = (from_bytes(futures[i].result()) if pool is not None
                                   else try_candidate(copy.deepcopy(net), i, keep, batches, distiller))
                tried.append({"layer": i, "unit": specs[i].key, "channels": [channels[i], keep], "predicted_ms": ms,
                              "holdout_accuracy": acc, "holdout_loss": loss, "net": cand})
                progress.update()
    chosen = max(tried, key=lambda t: (t["holdout_accuracy"], -t["holdout_loss"]))
    steps.append({"step": k, "goal_ms": step_goal, **{n: v for n, v in chosen.items() if n != "net"},
                  "seconds": round(time.perf_counter() - t0, 2),
                  "candidates": [{n: t[n] for n in ("layer", "channels", "predicted_ms", "holdout_accuracy", "holdout_loss")}
                                 for t in tried]})
    return chosen["net"]
