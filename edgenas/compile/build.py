"""ONNX -> Relax -> integer kernels -> (layout) -> tuned schedules, default ones for the rest -> a library for the target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgenas.compile.frontend import ModelInput, to_relax
from edgenas.compile.int8 import compute_ops, float_ops_on_quantized_path
from edgenas.compile.schedules import naive_kernels, schedule_pipeline
from edgenas.errors import warn
from edgenas.compile.tune import TuneReport, apply_database, compile_target, database_dir, tune
from edgenas.targets import Target

LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class CompileConfig:
    trials: int = 0  # MetaSchedule trials over the tasks not yet in the database; 0: apply the database only
    #: NHWC/OHWI lets MetaSchedule's int8 dot-product intrinsics (VNNI, sdot) apply
    layout: str = "NHWC"
    tuning_db: Path | None = None
    input_shape: tuple[int, ...] | None = None
    #: a time budget for tuning, alone (as many trials as fit) or with `trials` (whichever ends first)
    tune_minutes: float | None = None
    #: tune on the board behind this RPC tracker (`rpc.RPCSettings`) instead of on this machine
    rpc: object | None = None


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
    #: seconds in each pass of `passes.compile_pipeline`, then of `schedules.schedule_pipeline`, in order
    pass_seconds: dict


def lower(mod, target: Target, layout: str):
    """`mod` through `passes.compile_pipeline`, to the kernels that are scheduled and tuned: the module, whether it was
    quantized, its compute ops after our rewrites (`int8.compute_ops`), and the seconds each pass took."""
    import tvm

    from edgenas.compile.passes import Record, compile_pipeline

    quantized = float_ops_on_quantized_path(mod) > 0
    tgt = compile_target(target)
    record = Record({"float": ("after", "IntegerQDQ", float_ops_on_quantized_path),
                     "ops": ("before", "DecomposeOps", compute_ops)})
    with tgt, tvm.transform.PassContext(instruments=[record]):
        mod = compile_pipeline(tgt, layout)(mod)
    if record.results["float"]:
        warn(f"{record.results['float']} quantized convolution(s) or matmul(s) have no integer form (not per-tensor "
             f"uint8/int8 activations with int8 weights) and compute in float")
    return mod, quantized, record.results["ops"], {name: round(s, 4) for name, s in record.seconds.items()}


def schedule(mod, tgt):
    """`mod`, tuned where the database had schedules, through `schedules.schedule_pipeline` for `tgt` (a
    `tvm.target.Target`): the module and the seconds each pass took."""
    import tvm

    from edgenas.compile.gpu_schedules import gpu_schedule_passes
    from edgenas.compile.passes import Record

    record = Record()
    with tgt, tvm.transform.PassContext(instruments=[record]):
        mod = schedule_pipeline(tgt, gpu_schedule_passes(tgt))(mod)
    return mod, {name: round(s, 4) for name, s in record.seconds.items()}


def _compile_relax(mod, target: Target, cfg: CompileConfig):
    """Lowered, tuned or scheduled by default, and compiled: the executable, whether it was quantized, its compute
    ops, the database, the tuning report and the seconds per pass of the lowering."""
    import tvm

    mod, quantized, ops, pass_seconds = lower(mod, target, cfg.layout)
    db = database_dir(target, cfg.tuning_db)
    tuning = cfg.trials or cfg.tune_minutes
    report, database = tune(mod, target, db, cfg.trials, cfg.tune_minutes, cfg.rpc) if tuning else (None, None)
    tgt = compile_target(target)
    mod = apply_database(mod, target, db, database)
    # a tuned kernel is the fastest that was measured for its task, vectorised or not
    tuned = {gv.name_hint for gv, f in mod.functions.items() if getattr(f, "attrs", None) and f.attrs.get("tirx.is_scheduled")}
    mod, seconds = schedule(mod, tgt)
    pass_seconds = {**pass_seconds, **seconds}
    naive = [k for k in naive_kernels(mod) if k.removesuffix("_prepacked") not in tuned] if tgt.kind.name == "llvm" else []
    if naive:
        warn(f"{len(naive)} convolution or matmul kernel(s) have no schedule and compile as naive loops: "
             f"{', '.join(naive[:3])}; tune them (--tune-trials) to make them fast")
    tir = "default"
    if tgt.kind.name == "nvptx":
        from edgenas.compile.cuda import register_libdevice, register_pipeline

        register_libdevice()
        tir = register_pipeline()
    return tvm.compile(mod, target=tgt, tir_pipeline=tir), quantized, ops, db, report, pass_seconds


def compile_onnx_model(data: bytes, where: str, target: Target, cfg: CompileConfig = CompileConfig()) -> Compiled:
    start = time.perf_counter()
    mod, inp = to_relax(data, where, cfg.input_shape)
    executable, quantized, ops, db, report, pass_seconds = _compile_relax(mod, target, cfg)
    return Compiled(executable, inp, quantized, ops, str(db), report, round(time.perf_counter() - start, 2), pass_seconds)


def graph_function(i: int) -> str:
    """The name of the i-th graph's function in a library of several."""
    return f"graph{i}"


def compile_onnx_graphs(graphs: list[bytes], target: Target, cfg: CompileConfig = CompileConfig()):
    """Several ONNX graphs compiled as `compile_onnx_model` compiles each, into one library whose function
    `graph_function(i)` runs the i-th graph. Relax's block builder adds a kernel equal to one it holds only once,
    so each distinct kernel is scheduled and generated once per library: that pays when the graphs share layers,
    as the blocks and networks of one space do. Returns the executable and each graph's input."""
    import tvm

    funcs, inputs = {}, []
    for i, data in enumerate(graphs):
        mod, inp = to_relax(data, f"ONNX graph {i}", cfg.input_shape)
        name = graph_function(i)
        funcs[tvm.ir.GlobalVar(name)] = mod["main"].with_attr("global_symbol", name)
        inputs.append(inp)
    executable, *_ = _compile_relax(tvm.IRModule(funcs), target, cfg)
    return executable, inputs
