"""Latency with OpenVINO, on this machine: a runtime a user may ship instead of TVM's library, reading the same ONNX
files (QDQ int8 included). It is an optional extra (`pip install -e '.[openvino]'`): where it is missing, the
verbs that would use it pass over it with one line (`missing`).

OpenVINO picks its kernels from the CPU it starts on; `ONEDNN_MAX_CPU_ISA` (set before the process starts) caps them
to an older class, and `kernels` reads back which ones ran, so that a figure says which class it holds for.
"""

from __future__ import annotations

import os
import platform

import numpy as np

from edgenas.errors import BadInput
from edgenas.measure.timing import MeasureConfig, Measurement, time_python_call
from edgenas.targets import Target

#: OpenVINO's CPU plugin: the machines its pip wheels run on
ARCHES = ("x86_64", "aarch64")
INSTALL = "pip install -e '.[openvino]'"


def missing() -> str | None:
    """Why OpenVINO cannot be used here (one phrase), or None."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return f"OpenVINO is not installed ({INSTALL})"
    return None


def check_runs_here(target: Target) -> None:
    if why := missing():
        raise BadInput(f"--backend openvino: {why}")
    if target.device != "cpu" or target.arch != platform.machine() or target.arch not in ARCHES:
        raise BadInput(f"target '{target.name}' ({target.arch}, {target.device}): OpenVINO measures only this "
                       f"{platform.machine()} machine's CPU; run the same edgenas command on the board itself")


def compile_model(onnx_model: bytes, threads: int = 1):
    """Every OpenVINO model edgenas runs, timed or not. f32 inference precision: on CPUs with bf16 or AMX, OpenVINO
    would otherwise run an fp32 model in bf16, a model other than the one whose accuracy was judged. The settings go
    to `compile_model`, not to the Core: two Cores of one process that both call `set_property` fail."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
              "INFERENCE_PRECISION_HINT": "f32"}
    return core.compile_model(core.read_model(model=onnx_model), "CPU", config)


def runner(compiled, x: np.ndarray):
    """A callable running one input through a compiled model, returning its first output."""
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})[0]


def logits(onnx_model: bytes, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """One image at a time, as the model was exported (batch 1)."""
    request = compile_model(onnx_model, threads).create_infer_request()
    return np.concatenate([np.asarray(request.infer({0: x[i:i + 1]})[0]) for i in range(len(x))])


def kernels(compiled) -> list[str]:
    """The kernels of the compiled model's convolutions and matmuls, as OpenVINO reports them (`jit_avx2_I8`,
    `brgconv_avx512_amx_1x1_I8`, ...): which CPU class actually ran."""
    found = set()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if "primitiveType" in info and layer in ("Convolution", "FullyConnected", "MatMul", "GroupConvolution"):
            found.add(info["primitiveType"].astype(str))
    return sorted(found)


def isa_cap() -> str | None:
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or None


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, target: Target, cfg: MeasureConfig, threads: int):
        check_runs_here(target)
        self.target, self.cfg, self.threads = target, cfg, threads

    def measure(self, onnx_model: bytes, input_shape: tuple[int, ...]) -> Measurement:
        from edgenas.measure.ort import random_input

        compiled = compile_model(onnx_model, self.threads)
        return time_python_call(runner(compiled, random_input(input_shape, "tensor(float)")), self.cfg)

    def describe(self) -> dict:
        import openvino

        return {"openvino": openvino.__version__, "max_cpu_isa": isa_cap()}

    def close(self) -> None:
        pass
