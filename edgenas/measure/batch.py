"""Many graphs of a space measured as they ship: for TVM, compiled side by side on every core, then timed one at a
time on a quiet machine.

Compiling is most of a TVM table's time (LLVM takes a second or more per int8 block, timing a fraction of one),
and it parallelises; timing must not share the CPU with anything. So graphs are compiled in chunks by a pool of
worker processes, and each chunk is timed here once its compiles are done. ONNX Runtime compiles nothing worth
a pool: its graphs are measured one after the other.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from edgenas.errors import EdgenasError
from edgenas.measure.timing import Measurement
from edgenas.space import Arch, SearchSpace
from edgenas.space.space import LayerSpec

#: Graphs compiled per worker before the chunk is timed: enough to keep the workers busy, few enough that an
#: interruption loses little compile work.
CHUNK_PER_WORKER = 6
#: Fewer graphs than this are compiled here: starting the workers (importing torch and TVM) costs seconds.
MIN_POOLED = 8


@dataclass(frozen=True)
class GraphJob:
    """One graph to measure, small enough to send to a worker: a unit of the space, or a whole network."""

    space: SearchSpace
    layer: LayerSpec | None = None
    arch: Arch | None = None
    seed: int = 0  # of the random BatchNorm statistics

    @property
    def shape(self) -> tuple[int, ...]:
        if self.layer is not None:
            return tuple(self.layer.input_shape)
        return (1, self.space.in_channels, self.arch.resolution, self.arch.resolution)

    def onnx(self, precision: str, target) -> bytes:
        """The graph as it ships at `precision` (`as_shipped`), with random weights."""
        from edgenas.measure.onnx_export import as_shipped
        from edgenas.space.blocks import Network, build_layer, randomize_bn

        block = self.layer is not None
        module = build_layer(self.layer) if block else Network(self.space, self.arch)
        return as_shipped(randomize_bn(module, self.seed), self.shape, precision, target, block=block)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _compile_job(args) -> tuple[str, str]:
    """In a worker: the job's graph compiled as `compile` does, exported as a library for the target; its input dtype."""
    from edgenas.measure.tvm import compile_onnx, export_library

    job, key, path = args
    compiled = compile_onnx(job.onnx(key.precision, key.target), key.target, key.layout, key.tuning_db)
    export_library(compiled.executable, Path(path), key.target)
    return path, compiled.input.dtype


def _portable(key):
    """The key with a fresh Target: a resolved `tvm.target.Target` cached on the old one does not pickle."""
    return dataclasses.replace(key, target=dataclasses.replace(key.target))


def measure_jobs(key, backend, jobs: Sequence[GraphJob]) -> Iterator[tuple[GraphJob, Measurement]]:
    """Each job's graph measured by `backend` as the table `key` measures, in order, as soon as it is measured."""
    workers = os.cpu_count() or 1
    if not key.is_tvm or len(jobs) < MIN_POOLED or workers < 2:
        for job in jobs:
            yield job, backend.measure(job.onnx(key.precision, key.target), job.shape)
        return
    portable, chunk = _portable(key), CHUNK_PER_WORKER * workers
    context = multiprocessing.get_context("spawn")  # TVM's runtime threads do not survive a fork
    with tempfile.TemporaryDirectory(prefix="edgenas-libraries-") as tmp, \
            ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            try:
                built = list(pool.map(_compile_job, [(job, portable, f"{tmp}/g{start + i}.so") for i, job in enumerate(part)]))
            except BrokenProcessPool:
                raise EdgenasError("a compile worker died (out of memory, or killed); run the same command to go on") from None
            for job, (path, dtype) in zip(part, built):
                yield job, backend.measure_library(Path(path), job.shape, dtype)
                Path(path).unlink()
