"""Latency with TVM: compiled for the target, measured here or on the board over RPC."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edgenas.errors import BadInput, EdgenasError, one_line
from edgenas.rpc import RPCSettings, open_session
from edgenas.measure.timing import MeasureConfig, Measurement
from edgenas.targets import Target

#: A measurement on a board whose RPC connection breaks mid-run (the server restarted, the board rebooted) is retried
#: up to this many times, each time on a session opened anew through the tracker.
RPC_RETRIES = 3
#: Seconds to wait before the n-th retry: n x this (2, 4, 6 s), time for a restarted server to register again.
RPC_BACKOFF_S = 2.0
#: Libraries a backend keeps for graphs measured again (a search's fit reads its networks twice)
KEPT = 8
#: What the TVM runtime says when a session's socket is gone (src/runtime/rpc/rpc_endpoint.cc, rpc_socket_impl.cc,
#: support/socket.h), besides the OSError subclasses Python raises itself. A call in flight when the server dies gets
#: "Check failed: (code == RPCCode::kReturn) is false: code=1" (kShutdown); the next one "SockChannel::Send Error:Broken pipe".
_CONNECTION_LOST = ("RPCCode::kReturn) is false", "SockChannel", "Channel closes before", "connection was previously closed",
                    "Connection reset", "Broken pipe", "RPCSessionTimeoutError")


def connection_lost(e: BaseException) -> bool:
    """Whether `e`, raised by a call over an RPC session, means the session broke (rather than the call failing)."""
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(e).__name__}: {e}"
    return any(s in text for s in _CONNECTION_LOST)


def compile_onnx(onnx_model: bytes, target: Target, layout: str, tuning_db: Path | None):  # -> compile.build.Compiled
    """`compile`'s own path (integer rewrite, layout, database and default schedules), untuned: what ships."""
    from edgenas.compile.build import CompileConfig, compile_onnx_model

    return compile_onnx_model(onnx_model, "ONNX graph", target, CompileConfig(0, layout, tuning_db))


def export_library(executable, path: Path, target: Target) -> Path:
    """Link the executable into a shared library the board can load, with the target's cross compiler."""
    import tvm

    from edgenas.compile.cuda import export_options

    if target.cross_compiler:
        if not shutil.which(target.cross_compiler):
            raise BadInput(
                f"{target.source}: cross compiler '{target.cross_compiler}' (field 'tvm.cross_compiler') is not "
                f"installed; run `bash tools/install-cross.sh`"
            )
        executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(target.cross_compiler),
                                  **export_options(target))
    else:
        executable.export_library(str(path), **export_options(target))
    return path


def load_here(executable, target: Target, path: Path):
    """The executable as this machine runs it: jitted, or for a GPU exported (to `path`) with its kernels as the
    board gets them (`compile.cuda.pack_ptx_kernels`)."""
    import tvm

    if target.device == "cuda":
        return tvm.runtime.load_module(str(export_library(executable, path, target)))
    return executable.jit()


def device(target: Target, session=None):
    """The target's device, here or on the board behind `session`."""
    import tvm

    api = session if session is not None else tvm
    return api.cuda(0) if target.device == "cuda" else api.cpu(0)


def load_remote(session, path: Path, rpc: RPCSettings):
    """Upload a library to the board and load it there."""
    try:
        session.upload(str(path))
        return session.load_module(Path(path).name)
    except Exception as e:  # the RPC layer raises TVMError, OSError or RuntimeError
        if connection_lost(e):
            raise  # the session broke, not the library: TvmBackend reopens it
        raise EdgenasError(f"the board at {rpc.tracker} (key '{rpc.key}') failed to load {Path(path).name}: {e}") from None


def time_functions(lib, dev, graphs: list[tuple[str, tuple[int, ...], str]], cfg: MeasureConfig) -> list[Measurement]:
    """Latency of each (function, input shape, input dtype) of the library on a random input, with TVM's own timer
    on the device.

    After a warm-up that fixes how many calls make a sample (`cfg.min_repeat_ms`), the graphs take turns: one
    sample of each, `cfg.repeat` rounds. A graph's samples are at least `cfg.cooldown_ms` apart, spread so that a
    burst of interference spoils few of them; when other graphs' samples fill that gap, nobody waits. TVM's timer
    calls the function once, untimed, before each sample, so no sample starts cold.
    """
    import tvm
    from tvm.runtime.vm import VirtualMachine  # relax.VirtualMachine, importable with TVM's runtime alone

    vm = VirtualMachine(lib, dev)
    timers = []
    for function, shape, dtype in graphs:
        x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype), dev)
        one = vm.time_evaluator(function, dev, number=1, repeat=1, min_repeat_ms=math.ceil(cfg.warmup_ms))(x).mean
        calls = max(1, math.ceil(cfg.min_repeat_ms / 1e3 / max(one, 1e-9)))
        timers.append((vm.time_evaluator(function, dev, number=calls, repeat=1), x))
    samples: list[list[float]] = [[] for _ in graphs]
    last = [-math.inf] * len(graphs)
    for _ in range(cfg.repeat):
        for i, (timer, x) in enumerate(timers):
            if (wait := last[i] + cfg.cooldown_ms / 1e3 - time.perf_counter()) > 0:
                time.sleep(wait)
            samples[i].append(timer(x).results[0] * 1e3)
            last[i] = time.perf_counter()
    return [Measurement.from_samples(s) for s in samples]


def time_main(lib, dev, input_shape: tuple[int, ...], cfg: MeasureConfig, dtype: str = "float32") -> Measurement:
    """Latency of the library's `main`, as `time_functions` measures."""
    return time_functions(lib, dev, [("main", input_shape, dtype)], cfg)[0]


class TvmBackend:
    name = "tvm"

    def __init__(self, target: Target, cfg: MeasureConfig, threads: int, rpc: RPCSettings | None = None,
                 layout: str = "NHWC", tuning_db: Path | None = None):
        if rpc is None and not target.runs_here:
            raise BadInput(f"{target.why_not_here()}: give --rpc-tracker HOST:PORT and --rpc-key KEY to measure on the "
                           f"board")
        # The TVM runtime sizes its thread pool from this variable when it first starts it.
        os.environ["TVM_NUM_THREADS"] = str(threads)
        self.target, self.cfg, self.threads, self.rpc = target, cfg, threads, rpc
        self.layout, self.tuning_db = layout, tuning_db
        self.session = open_session(rpc) if rpc else None
        self._tmp = tempfile.TemporaryDirectory(prefix="edgenas-tvm-")
        self._count = 0
        self._kept: dict[str, tuple] = {}  # sha256 of a measured graph -> (its library, input dtype)

    def measure(self, onnx_model: bytes, input_shape: tuple[int, ...]) -> Measurement:
        """A graph measured again with the same backend is not compiled again: its library is kept (`KEPT`), since
        compiling and LLVM's code generation take seconds and timing a small network a fraction of one."""
        digest = hashlib.sha256(onnx_model).hexdigest()
        if digest not in self._kept:
            compiled = compile_onnx(onnx_model, self.target, self.layout, self.tuning_db)
            self._count += 1
            path = Path(self._tmp.name) / f"block{self._count}.so"
            lib = (load_here(compiled.executable, self.target, path) if self.rpc is None else
                   export_library(compiled.executable, path, self.target))
            while len(self._kept) >= KEPT:
                self._kept.pop(next(iter(self._kept)))
            self._kept[digest] = (lib, compiled.input.dtype)
        lib, dtype = self._kept[digest]
        if self.rpc is None:
            return time_main(lib, device(self.target), input_shape, self.cfg, dtype)
        return self._measure_remote(lib, [("main", input_shape, dtype)])[0]

    def measure_library(self, path: Path, input_shape: tuple[int, ...], dtype: str = "float32") -> Measurement:
        """Latency of an exported library's `main` (an artifact's), loaded here or uploaded to the board."""
        return self.measure_functions(path, [("main", input_shape, dtype)])[0]

    def measure_functions(self, path: Path, graphs: list[tuple[str, tuple[int, ...], str]]) -> list[Measurement]:
        """Latency of each (function, input shape, input dtype) of an exported library, as `time_functions` measures."""
        if self.rpc is None:
            return time_functions(self._load(path), device(self.target), graphs, self.cfg)
        return self._measure_remote(path, graphs)

    def _load(self, path: Path):
        """The library at `path`, loaded here or uploaded to the board and loaded there."""
        import tvm

        return tvm.runtime.load_module(str(path)) if self.rpc is None else load_remote(self.session, path, self.rpc)

    def _measure_remote(self, path: Path, graphs: list[tuple[str, tuple[int, ...], str]]) -> list[Measurement]:
        """Upload, load and time a library on the board. When the session breaks, a new one is opened and the
        measurement retried, RPC_RETRIES times with a growing back-off, before a one-line error."""
        last = None
        for retry in range(RPC_RETRIES + 1):
            if retry:
                time.sleep(RPC_BACKOFF_S * retry)
            if self.session is None:
                try:
                    self.session = open_session(self.rpc)
                except EdgenasError as e:  # the server has not registered again (yet), or refused
                    last = e
                    continue
            try:
                return time_functions(self._load(path), device(self.target, self.session), graphs, self.cfg)
            except Exception as e:
                if not connection_lost(e):
                    raise
                last, self.session = e, None
        raise EdgenasError(
            f"lost the connection to the RPC server with key '{self.rpc.key}' at tracker {self.rpc.tracker}, and "
            f"{RPC_RETRIES} retries on a new session over {RPC_BACKOFF_S * RPC_RETRIES * (RPC_RETRIES + 1) / 2:g} s "
            f"failed (last: {one_line(last)})"
        )

    def describe(self) -> dict:
        import tvm

        d = {"tvm": tvm.__version__, "tvm_target": str(self.target.tvm), "layout": self.layout, "tuned": False}
        if self.rpc:
            d["rpc"] = {"tracker": self.rpc.tracker, "key": self.rpc.key}
        return d

    def close(self) -> None:
        self.session, self._kept = None, {}
        self._tmp.cleanup()
