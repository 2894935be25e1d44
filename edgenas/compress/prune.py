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

import bisect
import contextlib
import copy
import hashlib
import io
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from edgenas.accuracy import model_inputs, ort_accuracy
from edgenas.bundle import ModelInfo, load_bundle, resolve, write_bundle
from edgenas.compress.prune_config import PruneConfig
from edgenas.data import Split, resize, to_input
from edgenas.errors import BadInput, EdgenasError, Interrupted, warn
from edgenas.jsonio import exclusive_lock
from edgenas.measure.onnx_export import to_onnx
from edgenas.measure.ort import make_session
from edgenas.progress import bar
from edgenas.search.export import SearchedNetwork, load_search_result, searched_network
from edgenas.search.search import measure_ms
from edgenas.space import SearchSpace
from edgenas.space.blocks import Head, MBConv, make_divisible
from edgenas.space.space import LayerSpec
from edgenas.supernet.evaluate import BN_CALIBRATION_IMAGES, recalibrate_bn
from edgenas.supernet.train import load_checkpoint, save_checkpoint, shift_augment
from edgenas.supernet.train_config import TrainConfig
from edgenas.tables.key import TableKey
from edgenas.tables.latency_model import LatencyModel
from edgenas.tables.latency_table import STATISTIC, LatencyTable
from edgenas.targets import get_target

STATE = "prune-state.pt"
#: a unit's predicted latency never falls below this share of its smallest table entry
FLOOR = 0.05
IMPORTANCE = tp.importance.GroupMagnitudeImportance(p=2)


class OutOfReach(EdgenasError):
    """No pruning reaches the target on the table: a build then ships the searched network as it is."""


# ---- latency of pruned networks ------------------------------------------------------------------
class ChannelCurve:
    """One unit's latency as a function of its mid channels, from table entries of the same unit at other widths.

    The table holds a block only at the space's expand ratios (for `digits`, 3, 4 and 6 times its input width),
    and a pruned block usually falls between them. Every layer of a block costs about linearly in its mid
    channels, so: linear interpolation between the two neighbouring entries; linear extrapolation from the two
    nearest beyond either end (below the smallest, what does not shrink stays: the projection to the output
    width, the residual, the call), never above the smallest entry and with a floor at `FLOOR` of it, so a
    prediction never reaches zero. With a single entry there is no slope, and the cost is taken as proportional to
    the mid channels, which overstates what pruning saves by the unit's fixed part.

    Pruned widths are multiples of `multiple`, and kernels that take channels that many at a time run a width
    between two multiples on a slower path (ONNX Runtime's int8 kernels on x86 take 16 at a time: an entry at 72
    channels can read slower than 80 channels run). So a width that is not an entry's own is read from the entries
    at multiples of `multiple` when two or more are, and an entry's own width always gives the entry.
    """

    def __init__(self, points: dict[float, float], multiple: int = 1):
        self.points = dict(points)
        aligned = {c: ms for c, ms in points.items() if c % multiple == 0}
        fit = aligned if len(aligned) >= 2 else points
        self.x = sorted(fit)
        self.y = [fit[c] for c in self.x]
        self.floor = FLOOR * min(self.y)

    def __call__(self, channels: float) -> float:
        if channels in self.points:
            return self.points[channels]
        x, y = self.x, self.y
        if len(x) == 1:
            ms = y[0] * channels / x[0]
        else:
            i = min(max(bisect.bisect_left(x, channels), 1), len(x) - 1)
            slope = (y[i] - y[i - 1]) / (x[i] - x[i - 1])
            if channels < x[0]:  # fewer channels never cost more, even where noise made two entries fall with width
                slope = max(slope, 0.0)
            ms = y[i - 1] + slope * (channels - x[i - 1])
        # the floor bounds an extrapolation below the smallest entry only: a measured entry is what it is
        return ms if channels >= x[0] else max(self.floor, ms)


def unit_points(table: LatencyTable, space: SearchSpace, spec: LayerSpec) -> dict[float, float]:
    """The table's entries for `spec` at other mid widths: {mid channels: ms}, its own entry included.

    An MBConv block has one entry per expand ratio. The head's expansion has one width in the space, so its
    entries at the last stage's other input widths stand in, each at the mid width with the same expansion
    MACs (mid * their input width / this one).
    """
    table.entry_ms(spec)
    if spec.kind == "mbconv":
        variants = {make_divisible(spec.cin * e): replace(spec, expand=e) for e in space.expand_ratios}
    else:
        variants = {spec.mid * c / spec.cin: replace(spec, cin=c) for c in space.stages[-1].widths}
    return {c: table.entries[v.key][STATISTIC] for c, v in variants.items() if v.key in table.entries}


class PrunedLatency:
    """The table's `LatencyModel` asked about a network with pruned mid channels: the stem from the table, every other
    unit through its `ChannelCurve`. Unpruned, it is the search's prediction to the last bit."""

    def __init__(self, table: LatencyTable, space: SearchSpace, specs: list[LayerSpec], multiple: int = 1):
        self.model = LatencyModel(table, space)
        self.stem_ms = [table.entry_ms(s) for s in specs if s.kind == "stem"]
        self.curves = {i: ChannelCurve(unit_points(table, space, s), multiple) for i, s in enumerate(specs) if s.kind != "stem"}
        # A correction with a negative per-unit term takes off the overhead every standalone block paid (an int8 block's
        # own input quantization, say). A unit extrapolated below its smallest entry must keep more than that overhead,
        # or a heavily pruned network would be predicted to take no time, or less.
        scale, per_unit = self.model.scale, self.model.per_unit
        overhead = max(0.0, -per_unit / scale) if scale > 0 else 0.0
        for curve in self.curves.values():
            curve.floor = max(curve.floor, overhead * (1 + FLOOR))

    def __call__(self, channels: dict[int, int]) -> float:
        """`channels`: mid channels per unit (layer index), as `mid_channels` gives them."""
        return self.model.of_units([*self.stem_ms, *(self.curves[i](c) for i, c in sorted(channels.items()))])


# ---- the network -----------------------------------------------------------------------------------
def mid_channels(net: nn.Module) -> dict[int, int]:
    """The prunable units of a `Network`, layer index -> mid channels: every MBConv block and the head."""
    return {i: m.expand[0].out_channels for i, m in enumerate(net) if isinstance(m, (MBConv, Head))}


def prune_unit(net: nn.Module, layer: int, keep: int) -> nn.Module:
    """Keep the `keep` mid channels of unit `layer` with the largest group L2 magnitude. Torch-Pruning's
    dependency graph slices every layer coupled to them: BatchNorms, the depthwise convolution, squeeze-excite's
    two convolutions, the projection's input (or the classifier's)."""
    conv = net[layer].expand[0]
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=_example(net))
    scores = IMPORTANCE(graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels))))
    drop = scores.argsort()[: conv.out_channels - keep].tolist()
    graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop).prune()
    return net.to(memory_format=torch.channels_last)


def _example(net: nn.Module) -> torch.Tensor:
    spec = net.layer_specs[0]
    return torch.zeros(1, spec.cin, net.arch.resolution, net.arch.resolution)


def macs_params(net: nn.Module) -> tuple[int, int]:
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for --json
        macs, params = tp.utils.count_ops_and_params(net, _example(net))
    return int(macs), int(params)


# ---- distillation ----------------------------------------------------------------------------------
class Distiller:
    """Fine-tunes pruned networks on the training split less `holdout` images, which score the candidates
    (validation accuracy is for the report only). The loss is the KL divergence to the teacher's predictions
    plus cross-entropy on the labels, with the random shifts supernet training used."""

    def __init__(self, teacher: nn.Module, split: Split, cfg: PruneConfig, resolution: int):
        self.teacher, self.cfg, self.res, self.norm = teacher.eval(), cfg, resolution, split.normalization
        self.teacher_res = teacher.arch.resolution
        hold = min(cfg.holdout, len(split.train_y) // 5)
        self.n = len(split.train_y) - hold
        self.x, self.y = split.train_x[: self.n], torch.as_tensor(split.train_y[: self.n])
        self.hold_x = self._input(split.train_x[self.n:])
        self.hold_y = torch.as_tensor(split.train_y[self.n:])
        self.cal = self._input(self.x[:BN_CALIBRATION_IMAGES])
        self.per_epoch = max(1, self.n // cfg.batch_size)

    def _input(self, images) -> torch.Tensor:
        return to_input(images, self.norm, self.res).contiguous(memory_format=torch.channels_last)

    def batches(self, steps: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """`steps` shifted training batches at the student's resolution, with the teacher's soft predictions and the
        labels. Made once, they serve every candidate of a NetAdapt step: the teacher runs once instead of once per
        candidate, and candidates are compared on the same images."""
        bs, order = min(self.cfg.batch_size, self.n), None
        for s in range(steps):
            if s % self.per_epoch == 0:
                order = torch.randperm(self.n, generator=gen).numpy()
            idx = order[(s % self.per_epoch) * bs:(s % self.per_epoch + 1) * bs]
            x = shift_augment(to_input(self.x[idx], self.norm), TrainConfig.shift, gen)
            with torch.no_grad():
                soft = F.softmax(self.teacher(resize(x, self.teacher_res).contiguous(memory_format=torch.channels_last)), 1)
            yield resize(x, self.res).contiguous(memory_format=torch.channels_last), soft, self.y[idx]

    @staticmethod
    def fit(net: nn.Module, batches: Iterable, opt, sched=None, progress=None) -> None:
        """Distillation on `batches`: KL divergence to the teacher plus cross-entropy on the labels."""
        net.train()
        for x, soft, y in batches:
            logits = net(x)
            loss = F.kl_div(F.log_softmax(logits, 1), soft, reduction="batchmean") + F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if progress is not None:
                progress.update()

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(net.parameters(), lr=self.cfg.lr, weight_decay=TrainConfig.weight_decay)

    def score(self, net: nn.Module) -> tuple[float, float]:
        """Held-out accuracy and cross-entropy, after recalibrating BatchNorm (pruning shifts every statistic after
        the unit). The supernet trained on these images too, so accuracy saturates and ties; the loss breaks ties."""
        net = recalibrate_bn(net, self.cal)
        with torch.no_grad():
            logits = net(self.hold_x)
        return (logits.argmax(1) == self.hold_y).sum().item() / len(self.hold_y), F.cross_entropy(logits, self.hold_y).item()


# ---- inputs -----------------------------------------------------------------------------------------
@dataclass
class PruneInput:
    """What pruning starts from, handed over whole: the searched network with the supernet's weights (`searched`),
    the bundle exported from it, and the table the search used with how to measure as it did (`key` None, with
    `not_measured` saying why, when the table's target is not this machine)."""
    searched: SearchedNetwork
    onnx_model: bytes
    info: ModelInfo  # the exported bundle's
    source: Path  # the exported model.onnx, named in messages and the report
    table: LatencyTable
    key: TableKey | None
    not_measured: str | None


def _search_of(info: ModelInfo | None, where: Path) -> tuple[dict, Path]:
    """The search result the bundle was exported from: its network is rebuilt with the supernet's weights."""
    record = next((h for h in info.history if h.stage == "export"), None) if info else None
    if record is None:
        raise BadInput(f"{where}: prune needs a model made by `edgenas export` (its model.json names the search and "
                       f"supernet the network is rebuilt from)")
    later = [h.stage for h in info.history if h.stage != "export"]
    if later:
        raise BadInput(f"{where}: already through {', '.join(later)}; prune the fp32 bundle `edgenas export` wrote "
                       f"(prune comes before quantize)")
    best, best_path = load_search_result(Path(record.report["search"]))
    exported = info.arch.encoding if info.arch else None
    if best["encoding"] != exported:
        raise BadInput(f"{best_path}: holds {best['encoding']}, not the exported {exported}; "
                       f"it changed since the export")
    return best, best_path


def _check_rebuilt(net: nn.Module, onnx_model: bytes, info: ModelInfo, split: Split, where: Path, supernet: str) -> None:
    """Refuse to prune a network other than the exported one (the supernet may have trained on since)."""
    x = model_inputs(info, split.val_x[:16])
    sess = make_session(onnx_model)
    ref = np.concatenate([sess.run(None, {info.input_name: x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        ours = net.eval()(torch.from_numpy(x)).numpy()
    diff = float(np.abs(ours - ref).max())
    if diff > 1e-3 * max(1.0, float(np.abs(ref).max())):
        raise BadInput(f"{where}: the network rebuilt from {supernet} differs from the exported one (outputs differ by "
                       f"{diff:.3g}); the supernet changed since the export: export again")


def _table(info: ModelInfo, space: SearchSpace):
    """The latency table the search used, and how to measure as it did (None, with why, when not on this machine)."""
    from edgenas.tables.device import describe, device_info, device_key

    if not info.latency or not info.latency.table:
        raise BadInput("model.json: no latency table recorded in 'latency'; export the model again")
    path = Path(info.latency.table)
    ident = LatencyTable.load(path).identity
    table = LatencyTable.open(path, {**ident, "space": space.name, "space_hash": space.hash})
    try:
        target = get_target(ident.get("target", ""))
    except BadInput:
        return table, None, f"target '{ident.get('target')}' is not registered here"
    if ident.get("measured_on") != "local" or not target.runs_here:
        return table, None, f"the table's target '{target.name}' ({ident.get('measured_on')}) is not this machine"
    if ident.get("device") != device_key():
        warn(f"{path} was measured on {describe(table.meta.get('device', {}))}, this machine is "
             f"{describe(device_info(target))}: its predictions may not hold here; pruning still measures here")
    schedules = table.meta.get("schedules") or {}
    key = TableKey(target, ident["backend"], ident["precision"], space, ident["threads"], None, ident.get("layout") or "NHWC",
                   Path(schedules["database"]) if schedules.get("database") else None)
    return table, key, None


def load_prune_input(model: Path, out: Path) -> PruneInput:
    """`edgenas prune`'s input from a bundle on disk: the search and table its model.json names, the network rebuilt
    from the supernet and checked against the exported one. A build hands `PruneInput` over instead."""
    onnx_path, _ = resolve(model)
    if Path(out).resolve() == onnx_path.parent.resolve():
        raise BadInput(f"--out {out}: is the input bundle; give a new directory")
    onnx_model, info = load_bundle(model)
    searched = searched_network(*_search_of(info, onnx_path))
    _check_rebuilt(searched.net, onnx_model, info, searched.evaluator.split, onnx_path, searched.supernet)
    return PruneInput(searched, onnx_model, info, onnx_path, *_table(info, searched.evaluator.supernet.space))


# ---- the stage --------------------------------------------------------------------------------------
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


def fastest_channels(latency: PrunedLatency, channels: dict[int, int], multiple: int) -> dict[int, int]:
    """Per unit, the channel count (its own, or a multiple of `multiple` below it) predicted fastest. Units add up
    independently, and a unit's curve need not fall all the way down: on a table of tiny blocks, where the call
    overhead dominates, an entry at 24 channels can read faster than 16 interpolated."""
    return {i: min([c, *range(c - (c % multiple or multiple), min(multiple, c) - 1, -multiple)],
                   key=lambda k, i=i: latency({**channels, i: k})) for i, c in channels.items()}


def _goal(latency: PrunedLatency, channels: dict[int, int], cfg: PruneConfig, source: Path) -> tuple[float, float, float]:
    """The unpruned prediction, the target, and the fastest any pruning reaches; fails before any work if out of reach."""
    start_ms = latency(channels)
    goal = cfg.target_ms if cfg.target_ms is not None else cfg.ratio * start_ms
    if goal >= start_ms:
        raise BadInput(f"--target-ms {goal:g}: {source} is already predicted at {start_ms:.4f} ms; nothing to prune")
    fastest = latency(fastest_channels(latency, channels, cfg.multiple))
    if fastest > goal:
        raise OutOfReach(f"target {goal:.4f} ms is out of reach: with every unit at its fastest channel count (multiples "
                         f"of {cfg.multiple}) the network is predicted at {fastest:.4f} ms (from {start_ms:.4f} ms), the "
                         f"fastest pruning reaches")
    return start_ms, goal, fastest


def _open_state(state_path: Path, ident: dict) -> dict | None:
    """The checkpoint of an interrupted pruning of the same input and settings, if there is one."""
    if not state_path.exists():
        return None
    state = load_checkpoint(state_path, ("identity", "steps", "channels", "model"), "delete it to prune from the start")
    if state["identity"] != ident:
        diff = next(k for k in ident if state["identity"].get(k) != ident[k])
        raise BadInput(f"{state_path}: holds a pruning with another {diff}; use a new --out or delete it")
    return state


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
        state = _open_state(state_path, _identity(inp.onnx_model, cfg))
        if state is not None:
            net = _rebuild(net, state)
        else:  # the search measured this network with this table's backend, as `_figures` would: not again
            searched_ms = info.latency.measured_ms if inp.key is not None else None
            state = {"identity": _identity(inp.onnx_model, cfg), "steps": [], "finetune": None, "seconds": 0.0,
                     "before": _figures(inp, net, inp.onnx_model, start_ms, threads, searched_ms)}
        resumed_from = len(state["steps"])
        distiller = Distiller(evaluator.network(space.largest()), split, cfg, arch.resolution)
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
            _finetune(net, distiller, cfg, state, checkpoint)
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


_worker: dict = {}  # in a candidate worker: the distiller every candidate of a prune shares


def _init_candidate_worker(distiller: bytes) -> None:
    torch.set_num_threads(1)
    _worker.update(distiller=_from_bytes(distiller))


def _try_candidate(net: nn.Module, layer: int, keep: int, batches: list, distiller=None):
    """`net` with `layer` pruned to `keep` mid channels, briefly distilled on `batches`; its held-out accuracy and loss."""
    distiller = distiller or _worker["distiller"]
    cand = prune_unit(net, layer, keep)
    distiller.fit(cand, batches, distiller.optimizer(cand))
    return cand, *distiller.score(cand)


def _as_bytes(obj) -> bytes:
    """Networks cross to and from workers as bytes: torch's own pickling of tensors between processes shares them
    through file descriptors, which left the pool waiting forever for its workers to exit."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _from_bytes(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


def _try_candidate_in_worker(net: bytes, layer: int, keep: int, batches: bytes) -> bytes:
    return _as_bytes(_try_candidate(_from_bytes(net), layer, keep, _from_bytes(batches)))


def _candidate_pool(distiller: "Distiller", candidates: int):
    """Worker processes that try candidates side by side, one thread each; None where there is one core or one
    candidate. Candidates are distilled on batches made before they start, so the result is the one trying them in
    turn would give."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(os.cpu_count() or 1, candidates)
    if workers < 2:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_candidate_worker, initargs=(_as_bytes(distiller),))


def _netadapt_step(net, latency: PrunedLatency, distiller: Distiller, cfg: PruneConfig, goal: float, step_ms: float,
                   steps: list, specs: list[LayerSpec]) -> nn.Module:
    """One NetAdapt step: every unit's candidate, briefly distilled and scored; the most accurate is returned."""
    t0, k = time.perf_counter(), len(steps) + 1
    channels = mid_channels(net)
    step_goal = max(goal, latency(channels) - step_ms)
    options = candidates(latency, channels, step_goal, cfg.multiple)
    if not options:
        raise EdgenasError(f"no unit can be pruned further at {latency(channels):.4f} ms predicted; the target is out of reach")
    batches = list(distiller.batches(cfg.candidate_steps, torch.Generator().manual_seed(cfg.seed * 1_000_003 + k * 1009)))
    tried = []
    with bar(len(options), f"prune step {k}", unit="net") as progress:
        pool = _candidate_pool(distiller, len(options))
        with pool or contextlib.nullcontext():
            if pool is not None:
                data, shared = _as_bytes(net), _as_bytes(batches)
                futures = {i: pool.submit(_try_candidate_in_worker, data, i, keep, shared) for i, (_, keep) in options.items()}
            for i, (ms, keep) in options.items():
                cand, acc, loss = (_from_bytes(futures[i].result()) if pool is not None
                                   else _try_candidate(copy.deepcopy(net), i, keep, batches, distiller))
                tried.append({"layer": i, "unit": specs[i].key, "channels": [channels[i], keep], "predicted_ms": ms,
                              "holdout_accuracy": acc, "holdout_loss": loss, "net": cand})
                progress.update()
    chosen = max(tried, key=lambda t: (t["holdout_accuracy"], -t["holdout_loss"]))
    steps.append({"step": k, "goal_ms": step_goal, **{n: v for n, v in chosen.items() if n != "net"},
                  "seconds": round(time.perf_counter() - t0, 2),
                  "candidates": [{n: t[n] for n in ("layer", "channels", "predicted_ms", "holdout_accuracy", "holdout_loss")}
                                 for t in tried]})
    return chosen["net"]


def _finetune(net: nn.Module, distiller: Distiller, cfg: PruneConfig, state: dict, checkpoint) -> None:
    """The final distillation, cosine learning rate to zero; a checkpoint after every epoch."""
    total = cfg.finetune_epochs * distiller.per_epoch
    if not total:
        return
    opt = distiller.optimizer(net)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    done = 0
    if state["finetune"]:
        opt.load_state_dict(state["finetune"]["optimizer"])
        sched.load_state_dict(state["finetune"]["scheduler"])
        done = state["finetune"]["epochs_done"]
    with bar(total, "fine-tune", initial=done * distiller.per_epoch, unit="step") as progress:
        for epoch in range(done, cfg.finetune_epochs):
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            distiller.fit(net, distiller.batches(distiller.per_epoch, gen), opt, sched, progress)
            state["finetune"] = {"epochs_done": epoch + 1, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            checkpoint()
