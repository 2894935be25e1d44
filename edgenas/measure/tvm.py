"""Latency with TVM: compiled for the target, measured here or on the board over RPC."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgenas.errors import BadInput, EdgenasError
from edgenas.measure.rpc import RPCSettings, open_session
from edgenas.measure.timing import MeasureConfig, Measurement
from edgenas.targets import Target


def import_onnx(onnx_model: bytes):
    """The Relax module of an ONNX graph, with its weights bound as constants."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Renaming name input.1 to input_1" and the like
        return from_onnx(onnx.load_from_string(onnx_model), keep_params_in_input=False)


def compile_onnx(onnx_model: bytes, target: Target):
    import tvm

    return tvm.compile(import_onnx(onnx_model), target=target.tvm)


def export_library(executable, path: Path, target: Target) -> Path:
    """Link the executable into a shared library the board can load, with the target's cross compiler."""
    import tvm

    if target.cross_compiler:
        if not shutil.which(target.cross_compiler):
            raise BadInput(
                f"{target.source}: cross compiler '{target.cross_compiler}' (field 'tvm.cross_compiler') is not "
                f"installed; run `bash tools/install-cross.sh`"
            )
        executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(target.cross_compiler))
    else:
        executable.export_library(str(path))
    return path


class TvmBackend:
    name = "tvm"

    def __init__(self, target: Target, cfg: MeasureConfig, threads: int, rpc: RPCSettings | None = None):
        if rpc is None and not target.runs_here:
            raise BadInput(
                f"target '{target.name}' ({target.device}, {target.arch}) does not run on this machine: "
                f"give --rpc-tracker HOST:PORT and --rpc-key KEY to measure on the board"
            )
        # The TVM runtime sizes its thread pool from this variable when it first starts it.
        os.environ["TVM_NUM_THREADS"] = str(threads)
        self.target, self.cfg, self.threads, self.rpc = target, cfg, threads, rpc
        self.session = open_session(rpc) if rpc else None
        self._tmp = tempfile.TemporaryDirectory(prefix="edgenas-tvm-")
        self._count = 0

    def _load(self, executable):
        import tvm

        if self.session is None:
            return executable, tvm.cuda(0) if self.target.device == "cuda" else tvm.cpu(0)
        self._count += 1
        name = f"block{self._count}.so"
        export_library(executable, Path(self._tmp.name) / name, self.target)
        try:
            self.session.upload(str(Path(self._tmp.name) / name))
            lib = self.session.load_module(name)
        except Exception as e:  # the RPC layer raises TVMError, OSError or RuntimeError
            raise EdgenasError(f"the board at {self.rpc.tracker} (key '{self.rpc.key}') failed to load a module: {e}") from None
        dev = self.session.cuda(0) if self.target.device == "cuda" else self.session.cpu(0)
        return lib, dev

    def measure(self, onnx_model: bytes, input_shape: tuple[int, ...]) -> Measurement:
        import tvm
        from tvm import relax

        lib, dev = self._load(compile_onnx(onnx_model, self.target))
        vm = relax.VirtualMachine(lib, dev)
        x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32), dev)
        vm.time_evaluator("main", dev, number=1, repeat=1, min_repeat_ms=math.ceil(self.cfg.warmup_ms))(x)
        timer = vm.time_evaluator(
            "main", dev, number=1, repeat=self.cfg.repeat, min_repeat_ms=math.ceil(self.cfg.min_repeat_ms),
            cooldown_interval_ms=math.ceil(self.cfg.cooldown_ms), repeats_to_cooldown=1,
        )
        res = timer(x)
        return Measurement.from_samples([r * 1e3 for r in res.results])

    def describe(self) -> dict:
        import tvm

        d = {"tvm": tvm.__version__, "tvm_target": str(self.target.tvm), "tuned": False}
        if self.rpc:
            d["rpc"] = {"tracker": self.rpc.tracker, "key": self.rpc.key}
        return d

    def close(self) -> None:
        self.session = None
        self._tmp.cleanup()
