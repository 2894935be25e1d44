"""`edgenas compile`: an ONNX model (ours or the user's) into a sealed, measured artifact for a target."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgenas.artifact.artifact import (Artifact, ArtifactInput, ArtifactLatency, ArtifactMeta, ArtifactTarget, CompileRecord,
                                      write_artifact)
from edgenas.bundle import load_bundle, resolve
from edgenas.compile.build import CompileConfig, compile_onnx_model
from edgenas.compile.cuda import device_code
from edgenas.compile.tune import compile_target
from edgenas.errors import BadInput, warn
from edgenas.jsonio import now
from edgenas.measure.load import LoadMeter, busy_note
from edgenas.rpc import RPCSettings
from edgenas.measure.timing import MeasureConfig
from edgenas.measure.tvm import TvmBackend, export_library
from edgenas.tables.device import device_info
from edgenas.targets import Target
from edgenas.versions import versions


def measure_artifact(library: Path, target: Target, shape: tuple[int, ...], dtype: str, cfg: MeasureConfig, threads: int,
                     rpc: RPCSettings | None) -> dict:
    """The library's latency here or on the board, with where and how it was taken."""
    backend, load = TvmBackend(target, cfg, threads, rpc), LoadMeter(here=rpc is None)
    try:
        with load.timing():
            m = backend.measure_library(library, shape, dtype)
    finally:
        backend.close()
    if note := busy_note(load.cores):
        warn(f"{library}: {note} (`edgenas bench`)")
    where = device_info(target, rpc)
    return {**m.to_dict(), "where": where.get("board") or f"{where['cpu']} ({where['hostname']})", "device": where,
            "threads": threads, "how": {"timer": "tvm time_evaluator", **cfg.to_dict()}, "other_load_cores": load.cores,
            "measured": now()}


def artifact_accuracy(library: Path, info, target: Target, where: str) -> float | None:
    """The linked library's own validation accuracy, loaded and run here as a user loads it: what ships, not what a
    stage before it measured. None when the target does not run here or the model came without its data. (Run on
    the executable before it is exported, the VM would leave state that TVM warns about, line by line, on export.)"""
    import tvm

    from edgenas.accuracy import bundle_split, model_inputs, top1, vm_logits

    if not target.runs_here or info is None or info.data is None or info.normalization is None:
        return None
    try:
        split = bundle_split(info, where)
    except BadInput as e:
        warn(f"the artifact's accuracy is not measured: {e}")
        return None
    return top1(vm_logits(tvm.runtime.load_module(str(library)), model_inputs(info, split.val_x)), split.val_y)


def _meta(info, onnx_path: Path, target: Target, inp: ArtifactInput, compile_record: CompileRecord | None, accuracy: dict,
          measured: dict | None, can_measure: bool, runtime: str, tvm_target: str) -> ArtifactMeta:
    return ArtifactMeta(
        name=info.arch.encoding if info and info.arch else onnx_path.stem,
        created=now(),
        input=inp,
        classes=tuple(info.classes) if info and info.classes else None,
        target=ArtifactTarget(target.name, tvm_target, target.device, target.arch, target.to_dict()),
        versions=versions(),
        compile=compile_record,
        accuracy=accuracy,
        latency=ArtifactLatency(info.latency.to_dict() if info and info.latency else None, measured,
                                None if can_measure else
                                f"target '{target.name}' does not run here; measure with `edgenas bench --rpc-tracker`"),
        model={"source": str(onnx_path.resolve()), "arch": info.arch.to_dict() if info and info.arch else None,
               "history": [h.to_dict() for h in info.history] if info else []},
        runtime=runtime,
    )


def package(model: Path, target: Target, out: Path, cfg: CompileConfig, measure: MeasureConfig, threads: int,
            rpc: RPCSettings | None = None) -> Artifact:
    onnx_path, _ = resolve(model)
    data, info = load_bundle(model)
    compiled = compile_onnx_model(data, str(onnx_path), target, cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        library = export_library(compiled.executable, Path(tmp) / "model.so", target)
        accuracy = dict(info.accuracy) if info else {}
        if (own := artifact_accuracy(library, info, target, str(onnx_path))) is not None:
            accuracy["artifact"] = own
        can_measure = target.runs_here or rpc is not None
        measured = measure_artifact(library, target, compiled.input.shape, compiled.input.dtype, measure, threads, rpc) \
            if can_measure else None
        meta = _meta(info, onnx_path, target,
                     ArtifactInput(compiled.input.name, tuple(compiled.input.shape), compiled.input.dtype, "NCHW",
                                   info.normalization if info else None),
                     CompileRecord(compiled.quantized, cfg.layout, compiled.ops, compiled.database,
                                   compiled.tuning.to_dict() if compiled.tuning else None, compiled.seconds,
                                   device_code(compiled.executable), compiled.pass_seconds),
                     accuracy, measured, can_measure, "tvm", str(compile_target(target)))
        return write_artifact(out, library, data, meta)


def measure_onnx_artifact(onnx_model: bytes, runtime: str, target: Target, shape: tuple[int, ...], cfg: MeasureConfig,
                          threads: int, where_file: Path) -> dict:
    """An ONNX Runtime or OpenVINO artifact's latency here, with where and how it was taken (as `measure_artifact`)."""
    from edgenas.measure.backends import make_backend

    backend, load = make_backend(runtime, target, cfg, threads), LoadMeter()
    try:
        with load.timing():
            m = backend.measure(onnx_model, shape)
        described = backend.describe()
    finally:
        backend.close()
    if note := busy_note(load.cores):
        warn(f"{where_file}: {note} (`edgenas bench`)")
    where = device_info(target, None)
    return {**m.to_dict(), "where": f"{where['cpu']} ({where['hostname']})", "device": where, "threads": threads,
            "how": {"timer": f"{runtime} in a Python loop", **cfg.to_dict()}, "runtime": described,
            "other_load_cores": load.cores, "measured": now()}


def package_onnx(model: Path, target: Target, out: Path, runtime: str, measure: MeasureConfig, threads: int) -> Artifact:
    """An artifact that ONNX Runtime or OpenVINO runs: the bundle's ONNX model as it is (a QDQ model for int8), with
    its accuracy and latency measured by that runtime here. Nothing is compiled: the runtime compiles when it loads."""
    from edgenas.accuracy import Evaluator, bundle_split

    onnx_path, _ = resolve(model)
    data, info = load_bundle(model)
    if info is None:
        raise BadInput(f"{onnx_path}: an {runtime} artifact is made from a model bundle (model.onnx with its model.json)")
    if not target.runs_here:
        raise BadInput(f"target '{target.name}' does not run here: {runtime} artifacts are made and measured on the "
                       f"machine that runs them; use --backend tvm for a board")
    evaluator = Evaluator.for_backend(runtime, target)
    accuracy = dict(info.accuracy)
    if info.data is not None and info.normalization is not None:
        accuracy["artifact"] = evaluator.accuracy(data, info, bundle_split(info, str(onnx_path)))
    measured = measure_onnx_artifact(data, runtime, target, info.input_shape, measure, threads, onnx_path)
    meta = _meta(info, onnx_path, target, ArtifactInput(info.input_name, tuple(info.input_shape), "float32", "NCHW",
                                                        info.normalization),
                 None, accuracy, measured, True, runtime, "")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return write_artifact(out, None, data, meta)
