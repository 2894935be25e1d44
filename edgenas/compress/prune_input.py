"""What pruning starts from: the searched network rebuilt with the supernet's weights, the bundle exported from it,
and the latency table the search used, handed over by a build or read back from a bundle on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgenas.accuracy import model_inputs
from edgenas.bundle import ModelInfo, load_bundle, resolve
from edgenas.data import Split
from edgenas.errors import BadInput, warn
from edgenas.measure.ort import make_session
from edgenas.search.export import SearchedNetwork, load_search_result, searched_network
from edgenas.space import SearchSpace
from edgenas.tables.key import TableKey
from edgenas.tables.latency_table import LatencyTable
from edgenas.targets import get_target


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


def _search_of(info: ModelInfo | None, where: Path):
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
    if best.encoding != exported:
        raise BadInput(f"{best_path}: holds {best.encoding}, not the exported {exported}; "
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
