"""A model's validation accuracy, measured with the runtime that will run it.

int8 results differ by engine and by CPU: ONNX Runtime's uint8 x int8 kernels on x86 CPUs without VNNI add pairs of
products in saturating 16-bit sums, while edgenas's TVM kernels accumulate in exact int32. So one engine's int8 is no
reference for another's, and a gate that measured ONNX Runtime would judge a model that never ships. The accuracy
gate, `quantize`'s report and the artifact's record are taken with the runtime that ships (`Evaluator`): the TVM
library `compile` makes (`tvm`), the ONNX model in ONNX Runtime (`ort`), or, where that runtime cannot run here, the
exact reference: the QDQ model evaluated in float, which ONNX Runtime does with its graph optimisations off (every
DequantizeLinear, float operator and QuantizeLinear runs as written; no fused integer kernel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgenas.bundle import ModelInfo
from edgenas.data import Split, load_split, to_input
from edgenas.errors import BadInput
from edgenas.measure.backends import BACKENDS
from edgenas.measure.ort import make_session
from edgenas.targets import Target

def bundle_split(info: ModelInfo | None, where: str) -> Split:
    if info is None or info.data is None or info.normalization is None:
        raise BadInput(f"{where}: no model.json with the data and preprocessing the model was trained with; "
                       f"make the model with `edgenas export` (or keep its model.json next to it)")
    return load_split(info.data, where)


def model_inputs(info: ModelInfo, images: np.ndarray) -> np.ndarray:
    """uint8 images -> the float inputs the model takes, preprocessed as at training."""
    return to_input(images, info.normalization, info.input_shape[-1]).numpy().astype(np.float32)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def ort_logits(onnx_model: bytes, x: np.ndarray, threads: int = 1, exact: bool = False) -> np.ndarray:
    """One image at a time, as the model was exported (batch 1). `exact`: graph optimisations off, the reference."""
    sess = make_session(onnx_model, threads=threads, optimize=not exact)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def vm_logits(executable, x: np.ndarray) -> np.ndarray:
    """A compiled TVM executable (or a loaded library) run here, one image at a time."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu(0))
    return np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy() for i in range(len(x))])


@dataclass(frozen=True)
class Evaluator:
    """Who judges a model: `runtime` ("tvm": the library compile makes; "ort": ONNX Runtime as it ships; "openvino":
    OpenVINO as it ships; "reference":
    the QDQ model in float) for `target`, with compile's `layout` and `tuning_db`."""

    runtime: str
    target: Target | None = None
    layout: str = "NHWC"
    tuning_db: Path | None = None
    threads: int = 1
    #: why the reference stands in for the target's own runtime (it does not run here), else None
    stand_in: str | None = None

    @classmethod
    def for_backend(cls, backend: str, target: Target, layout: str = "NHWC", tuning_db: Path | None = None,
                    threads: int = 1) -> "Evaluator":
        """The judge of a model that ships to `target` on `backend` (tvm, ort or openvino)."""
        if backend not in BACKENDS:
            raise BadInput(f"--backend {backend}: one of {', '.join(BACKENDS)}")
        if backend == "openvino" and target.runs_here:
            from edgenas.measure.openvino import missing

            if why := missing():
                raise BadInput(f"--backend openvino: {why}")
        if not target.runs_here:
            return cls("reference", target, layout, tuning_db, threads,
                       f"target '{target.name}' does not run here; the QDQ model in float stands in "
                       f"({'its TVM library computes in exact integers' if backend == 'tvm' else 'measure on the board'})")
        return cls(backend, target, layout, tuning_db, threads)

    def logits(self, onnx_model: bytes, x: np.ndarray) -> np.ndarray:
        if self.runtime == "tvm":
            from edgenas.measure.tvm import compile_onnx

            return vm_logits(compile_onnx(onnx_model, self.target, self.layout, self.tuning_db).executable, x)
        if self.runtime == "openvino":
            from edgenas.measure.openvino import logits

            return logits(onnx_model, x, self.threads)
        return ort_logits(onnx_model, x, self.threads, exact=self.runtime == "reference")

    def accuracy(self, onnx_model: bytes, info: ModelInfo, split: Split) -> float:
        return top1(self.logits(onnx_model, model_inputs(info, split.val_x)), split.val_y)

    def describe(self) -> dict:
        return {"runtime": self.runtime, "target": self.target.name if self.target else None, "stand_in": self.stand_in}


def ort_accuracy(onnx_model: bytes, info: ModelInfo, split: Split, threads: int = 1) -> float:
    """A float model's validation accuracy (export and prune judge fp32 networks with it)."""
    return Evaluator("ort", threads=threads).accuracy(onnx_model, info, split)
