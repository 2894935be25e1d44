"""`edgenas export`: the searched network as a standalone fp32 model bundle, the input of prune/quantize/compile."""

from __future__ import annotations

from pathlib import Path

import torch

from edgenas.accuracy import ort_accuracy
from edgenas.bundle import ModelInfo, write_bundle
from edgenas.jsonio import check_schema, read_json
from edgenas.measure.onnx_export import INPUT_NAME, to_onnx
from edgenas.search.search import RESULT_SCHEMA, RESULT_SCHEMA_VERSION, run_split
from edgenas.space import Arch
from edgenas.supernet.evaluate import SubnetEvaluator
from edgenas.supernet.train import load_supernet


def load_search_result(path: Path) -> tuple[dict, Path]:
    path = Path(path)
    best_path = path / "best.json" if path.is_dir() else path
    best = check_schema(read_json(best_path), best_path, RESULT_SCHEMA, RESULT_SCHEMA_VERSION, "search result", "search again")
    return best, best_path


def searched_network(best: dict):
    """The winner with the supernet's weights and recalibrated BatchNorm, its model description, and the evaluator
    (the supernet and the split it was trained on)."""
    supernet, run = load_supernet(Path(best["supernet"]))
    split = run_split(run, Path(best["supernet"]))
    arch = Arch.from_dict(best["arch"])
    supernet.space.check_arch(arch)
    evaluator = SubnetEvaluator(supernet, split)
    net = evaluator.network(arch).to(memory_format=torch.contiguous_format)
    shape = (1, supernet.space.in_channels, arch.resolution, arch.resolution)
    info = ModelInfo(
        input_name=INPUT_NAME, input_shape=shape, normalization=split.normalization.to_dict(), classes=split.classes,
        data={**run["data"], "val_fraction": run["config"]["val_fraction"]}, arch={**best["arch"], "encoding": best["encoding"]},
        latency={"predicted_ms": best["predicted_latency_ms"], "measured_ms": best["measured_latency_ms"],
                 "budget_ms": best["budget_ms"], "table": best["table"], "precision": best.get("precision", "fp32")},
    )
    return net, info, evaluator


def export(search: Path, out: Path, threads: int = 1) -> ModelInfo:
    best, best_path = load_search_result(search)
    net, info, evaluator = searched_network(best)
    onnx_model = to_onnx(net, info.input_shape)
    info = info.then("export", accuracy={"fp32": ort_accuracy(onnx_model, info, evaluator.split, threads)},
                     record={"search": str(best_path.resolve()), "supernet": best["supernet"]})
    write_bundle(out, onnx_model, info)
    return info
