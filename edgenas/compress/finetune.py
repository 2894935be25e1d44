"""The searched network fine-tuned on its own, by the distillation pruning uses, into a bundle of its own.

Pruning's final distillation is worth several points to a network fresh from the supernet. Crediting them to pruning
would make any pruning look like it paid; the network pruning must beat is the searched one fine-tuned as long, and
pruning starts from it. A checkpoint after every epoch lets an interrupted run resume, and stays once the fine-tuning
is done, so a resumed build reads the fine-tuned network back instead of training it again.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from edgenas.accuracy import ort_accuracy
from edgenas.bundle import ModelInfo, write_bundle
from edgenas.compress.distiller import Distiller
from edgenas.compress.prune_config import DistillConfig
from edgenas.compress.prune_input import PruneInput
from edgenas.errors import Interrupted
from edgenas.jsonio import exclusive_lock
from edgenas.measure.onnx_export import to_onnx
from edgenas.supernet.evaluate import recalibrate_bn
from edgenas.supernet.train import resume_checkpoint, save_checkpoint

STATE = "finetune-state.pt"


@dataclass
class Tuned:
    """The fine-tuned network (channels-last, as pruning trains it) and the bundle written from it."""
    net: nn.Module
    onnx_model: bytes
    info: ModelInfo

    def as_prune_input(self, inp: PruneInput, source: Path) -> PruneInput:
        """What pruning starts from when it starts from this network: everything else as `inp` had it."""
        return replace(inp, searched=replace(inp.searched, net=self.net), onnx_model=self.onnx_model, info=self.info,
                       source=source)


def _identity(inp: PruneInput, cfg: DistillConfig) -> dict:
    return {"source": hashlib.sha256(inp.onnx_model).hexdigest()[:16], **cfg.to_dict()}


def finetune(inp: PruneInput, out: Path, cfg: DistillConfig, threads: int = 1) -> Tuned:
    """`inp`'s network distilled for `cfg.epochs` from the supernet's largest network into the bundle `out`."""
    start = time.perf_counter()
    torch.set_num_threads(threads)
    evaluator, info = inp.searched.evaluator, inp.info
    net = copy.deepcopy(inp.searched.net).to(memory_format=torch.channels_last)  # the caller's network stays as it is
    out = Path(out)
    state_path, ident, epochs = out / STATE, _identity(inp, cfg), cfg.epochs
    with exclusive_lock(state_path):
        state = resume_checkpoint(state_path, ident, ("model",), "fine-tuning", "delete it to fine-tune from the start")
        if state is None:
            state = {"identity": ident, "finetune": None, "seconds": 0.0}
        else:
            net.load_state_dict(state["model"])
        distiller = Distiller(evaluator.network(evaluator.supernet.space.largest()), evaluator.split, cfg,
                              net.arch.resolution)
        t0 = start

        def checkpoint() -> None:
            nonlocal t0
            t0, elapsed = time.perf_counter(), time.perf_counter() - t0
            state.update(model=net.state_dict(), seconds=state["seconds"] + elapsed)
            save_checkpoint(state_path, state)

        try:
            distiller.finetune(net, epochs, state, checkpoint, "fine-tune the searched network")
        except KeyboardInterrupt:
            done = (state["finetune"] or {}).get("epochs_done", 0)
            raise Interrupted(f"interrupted: {done} fine-tuning epoch(s) are saved in {state_path}; run the same "
                              f"command to resume") from None
        if "model" not in state:
            checkpoint()
        recalibrate_bn(net, distiller.cal)
        onnx_model = to_onnx(copy.deepcopy(net).to(memory_format=torch.contiguous_format), info.input_shape)
        seconds = round(state["seconds"] + time.perf_counter() - t0, 2)
        tuned = info.then("finetune", accuracy={"fp32": ort_accuracy(onnx_model, info, evaluator.split, threads)},
                          record={"epochs": epochs, "teacher": "the supernet's largest network", "seconds": seconds})
        write_bundle(out, onnx_model, tuned)
    return Tuned(net, onnx_model, tuned)
