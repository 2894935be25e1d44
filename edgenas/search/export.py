"""`edgenas export`: the searched network as a standalone fp32 model bundle, the input of prune/quantize/compile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgenas.accuracy import ort_accuracy
from edgenas.bundle import LatencyRecord, ModelInfo, NetworkRecord, write_bundle
from edgenas.jsonio import check_schema, read_json
from edgenas.measure.onnx_export import INPUT_NAME, to_onnx
from edgenas.search.report import SearchReport
from edgenas.search.search import RESULT_SCHEMA, RESULT_SCHEMA_VERSION, run_data, run_split
from edgenas.space import Arch
from edgenas.supernet.evaluate import SubnetEvaluator
from edgenas.supernet.train import load_supernet


def load_search_result(path: Path) -> tuple[SearchReport, Path]:
    path = Path(path)
    best_path = path / "best.json" if path.is_dir() else path
    best = check_schema(read_json(best_path), best_path, RESULT_SCHEMA, RESULT_SCHEMA_VERSION, "search result", "search again")
    return SearchReport.from_dict(best, str(best_path)), best_path


@dataclass
class SearchedNetwork:
    """The search's winner, built once with the supernet's weights and handed as one object to export, prune and
    MAC counting; `evaluator` holds the supernet and the split it was trained on (prune distils from it)."""
    net: nn.Module
    info: ModelInfo
    evaluator: SubnetEvaluator
    search: Path  # the best.json it was built from, recorded in the export's history
    supernet: str  # the supernet run directory


def searched_network(best: SearchReport, best_path: Path) -> SearchedNetwork:
    """The winner with the supernet's weights and recalibrated BatchNorm, and its model description."""
    supernet, run = load_supernet(Path(best.supernet))
    split = run_split(run, Path(best.supernet))
    arch = Arch.from_dict(best.arch)
    supernet.space.check_arch(arch)
    evaluator = SubnetEvaluator(supernet, split)
    net = evaluator.network(arch).to(memory_format=torch.contiguous_format)
    shape = (1, supernet.space.in_channels, arch.resolution, arch.resolution)
    info = ModelInfo(
        input_name=INPUT_NAME, input_shape=shape, normalization=split.normalization, classes=split.classes,
        data=run_data(run, Path(best.supernet)), arch=NetworkRecord(arch, best.encoding),
        latency=LatencyRecord(best.predicted_latency_ms, best.measured_latency_ms, best.budget_ms, best.table,
                              best.precision),
    )
    return SearchedNetwork(net, info, evaluator, Path(best_path).resolve(), best.supernet)


def export(searched: SearchedNetwork, out: Path, threads: int = 1) -> tuple[bytes, ModelInfo]:
    """The bundle `out` (model.onnx + model.json) of the searched network; returns what it wrote."""
    onnx_model = to_onnx(searched.net, searched.info.input_shape)
    info = searched.info.then("export", accuracy={"fp32": ort_accuracy(onnx_model, searched.info, searched.evaluator.split, threads)},
                              record={"search": str(searched.search), "supernet": searched.supernet})
    write_bundle(out, onnx_model, info)
    return onnx_model, info


def export_search(search: Path, out: Path, threads: int = 1) -> ModelInfo:
    """`edgenas export`: the search result at `search` (its directory or best.json) as a bundle."""
    best, best_path = load_search_result(search)
    return export(searched_network(best, best_path), out, threads)[1]
