"""Latency with ONNX Runtime, on this machine (which must be the target, or run its code natively)."""

from __future__ import annotations

import platform

import numpy as np

from edgenas.errors import BadInput
from edgenas.measure.timing import MeasureConfig, Measurement, time_python_call
from edgenas.targets import Target


def check_runs_here(target: Target) -> None:
    import onnxruntime as ort

    if target.arch != platform.machine():
        raise BadInput(
            f"target '{target.name}' is {target.arch}; ONNX Runtime cannot measure it on this {platform.machine()} "
            f"machine: run the same edgenas command on the board itself, or use --backend tvm with --rpc-tracker"
        )
    missing = [p for p in target.ort_providers if p not in ort.get_available_providers()]
    if missing:
        raise BadInput(
            f"target '{target.name}' needs ONNX Runtime providers {', '.join(missing)}, which this onnxruntime lacks "
            f"(has {', '.join(ort.get_available_providers())})"
        )


def make_session(onnx_model: bytes, target: Target | None = None, threads: int = 1, optimize: bool = True):
    """Every ONNX Runtime session edgenas opens, timed or not: ORT's default of a thread per core would fight the
    other jobs of a shared machine. On `target`'s providers, or (None) this machine's CPU. `optimize=False` runs the
    graph as written: a QDQ model then computes in float (no fused integer kernels), the exact int8 reference."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.log_severity_level = 3
    providers = list(target.ort_providers) if target is not None else ["CPUExecutionProvider"]
    return ort.InferenceSession(onnx_model, opts, providers=providers)


def random_input(shape: tuple[int, ...], ort_type: str) -> np.ndarray:
    """A random tensor for an input of ONNX Runtime type `ort_type` ("tensor(float)", "tensor(uint8)", ...)."""
    rng = np.random.default_rng(0)
    if ort_type in ("tensor(uint8)", "tensor(int8)"):
        info = np.iinfo(np.uint8 if ort_type == "tensor(uint8)" else np.int8)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(info.dtype)
    return rng.standard_normal(shape, dtype=np.float32)


class OrtBackend:
    name = "ort"

    def __init__(self, target: Target, cfg: MeasureConfig, threads: int):
        check_runs_here(target)
        self.target, self.cfg, self.threads = target, cfg, threads

    def measure(self, onnx_model: bytes, input_shape: tuple[int, ...]) -> Measurement:
        sess = make_session(onnx_model, self.target, self.threads)
        feed = {sess.get_inputs()[0].name: random_input(input_shape, sess.get_inputs()[0].type)}
        return time_python_call(lambda: sess.run(None, feed), self.cfg)

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"providers": list(self.target.ort_providers), "onnxruntime": ort.__version__}

    def close(self) -> None:
        pass
