"""ONNX -> Relax -> integer kernels -> (layout) -> tuned schedules, default ones for the rest -> a library for the target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgenas.compile.frontend import ModelInput, to_relax
from edgenas.compile.int8 import compute_ops, float_ops_on_quantized_path, integer_qdq
from edgenas.compile.layout import elementwise_qdq, to_nhwc
from edgenas.compile.schedules import default_schedules
from edgenas.compile.tune import TuneReport, apply_database, compile_target, database_dir, tune
from edgenas.errors import warn
from edgenas.targets import Target

LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class CompileConfig:
    trials: int = 0  # MetaSchedule trials over the tasks not yet in the database; 0: apply the database only
    #: NHWC/OHWI lets MetaSchedule's int8 dot-product intrinsics (VNNI, sdot) apply
    layout: str = "NHWC"
    tuning_db: Path | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass
class Compiled:
    executable: object
    input: ModelInput
    quantized: bool
    #: conv2d/matmul calls by accumulator dtype after the integer rewrite
    ops: dict
    database: str
    tuning: TuneReport | None
    seconds: float


def lower(mod, target: Target, layout: str):
    """Integer rewrite, layout, then the passes that split the model into the tasks MetaSchedule tunes."""
    import tvm
    from tvm import relax

    quantized = float_ops_on_quantized_path(mod) > 0
    mod = integer_qdq(mod)
    left = float_ops_on_quantized_path(mod)
    if left:
        warn(f"{left} quantized convolution(s) or matmul(s) have no integer form (not per-tensor uint8/int8 activations "
             f"with int8 weights) and compute in float")
    mod = elementwise_qdq(mod)
    if layout == "NHWC":
        mod = to_nhwc(mod)
    ops = compute_ops(mod)
    with compile_target(target):
        mod = tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(), relax.get_pipeline("zero"),
        ])(mod)
    return mod, quantized, ops


def compile_onnx_model(data: bytes, where: str, target: Target, cfg: CompileConfig = CompileConfig()) -> Compiled:
    import tvm

    start = time.perf_counter()
    mod, inp = to_relax(data, where, cfg.input_shape)
    mod, quantized, ops = lower(mod, target, cfg.layout)
    db = database_dir(target, cfg.tuning_db)
    report, database = tune(mod, target, db, cfg.trials) if cfg.trials else (None, None)
    mod = default_schedules(apply_database(mod, target, db, database), compile_target(target))
    executable = tvm.compile(mod, target=compile_target(target))
    return Compiled(executable, inp, quantized, ops, str(db), report, round(time.perf_counter() - start, 2))
