"""Many graphs of a space measured as they ship: for TVM, compiled side by side on every core, then timed on a
quiet machine.

Compiling is most of a TVM table's time (scheduling and LLVM take about a second per int8 block), and it
parallelises; timing must not share the CPU with anything (a compile on the other core made samples slower by
several percent). So graphs are compiled in chunks by a pool of worker processes, and each chunk is timed here
once its compiles are done. Each worker compiles its run of a chunk into one library (`compile_onnx_graphs`):
neighbouring blocks of a space differ in one choice and share most of their kernels, which are then generated
once per library instead of once per block. The graphs of a library are timed together, taking turns
(`time_functions`): the pause between two samples of one graph is spent on the others' samples, not asleep.
ONNX Runtime compiles nothing worth a pool: its graphs are measured one after the other.
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
from edgenas.measure.load import LoadMeter
from edgenas.measure.timing import Measurement
from edgenas.space import Arch, SearchSpace
from edgenas.space.space import LayerSpec

#: Graphs compiled by a worker into one library before the chunk is timed: enough to share kernels, few enough that
#: an interruption loses little compile work and LLVM's cost stays linear in the library's size.
GRAPHS_PER_LIBRARY = {"block": 24, "network": 12}
#: Fewer graphs than this are compiled here: starting the workers (importing torch and TVM) costs seconds.
MIN_POOLED = 8


@dataclass(frozen=True)
class GraphJob:
    """One graph to measure, small enough to send to a worker: a unit of the space, or a whole network."""

    space: SearchSpace
    layer: LayerSpec | None = None
    arch: Arch | None = None
    seed: int = 0  # of the random BatchNorm statistics
    precision: str | None = None  # as it ships at this precision; None: the table's

    @property
    def shape(self) -> tuple[int, ...]:
        if self.layer is not None:
            return tuple(self.layer.input_shape)
        return (1, self.space.in_channels, self.arch.resolution, self.arch.resolution)

    def onnx(self, precision: str, target) -> bytes:
        """The graph as it ships at its own precision or else `precision` (`as_shipped`), with random weights."""
        precision = self.precision or precision
        from edgenas.measure.onnx_export import as_shipped
        from edgenas.space.blocks import Network, build_layer, randomize_bn

        block = self.layer is not None
        module = build_layer(self.layer) if block else Network(self.space, self.arch)
        return as_shipped(randomize_bn(module, self.seed), self.shape, precision, target, block=block)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _compile_group(args) -> tuple[str, list[str]]:
    """In a worker: the jobs' graphs compiled as `compile` does into one library for the target, exported; each
    graph's input dtype."""
    from edgenas.compile.build import CompileConfig, compile_onnx_graphs
    from edgenas.measure.tvm import export_library

    jobs, key, path = args
    executable, inputs = compile_onnx_graphs([job.onnx(key.precision, key.target) for job in jobs], key.target,
                                             CompileConfig(0, key.layout, key.tuning_db))
    export_library(executable, Path(path), key.target)
    return path, [inp.dtype for inp in inputs]


def _portable(key):
    """The key with a fresh Target: a resolved `tvm.target.Target` cached on the old one does not pickle."""
    return dataclasses.replace(key, target=dataclasses.replace(key.target))


def measure_jobs(key, backend, jobs: Sequence[GraphJob], load: LoadMeter | None = None,
                 min_pooled: int = MIN_POOLED) -> Iterator[tuple[GraphJob, Measurement]]:
    """Each job's graph measured by `backend` as the table `key` measures, in order, as soon as it is measured;
    `load` adds up what other processes took of the CPU meanwhile. TVM compiles on every core from `min_pooled`
    jobs on."""
    workers, load = os.cpu_count() or 1, load or LoadMeter(here=False)
    if not key.is_tvm or len(jobs) < min_pooled or workers < 2:
        for job in jobs:
            with load.timing():  # exporting and compiling here is this process's own time: the meter leaves it out
                measured = backend.measure(job.onnx(key.precision, key.target), job.shape)
            yield job, measured
        return
    from edgenas.compile.build import graph_function

    portable, chunk = _portable(key), GRAPHS_PER_LIBRARY["block" if jobs[0].layer is not None else "network"] * workers
    context = multiprocessing.get_context("spawn")  # TVM's runtime threads do not survive a fork
    with tempfile.TemporaryDirectory(prefix="edgenas-libraries-") as tmp, \
            ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            size = -(-len(part) // workers)  # neighbours share the most kernels: each worker takes a run of them
            groups = [part[i:i + size] for i in range(0, len(part), size)]
            try:
                built = list(pool.map(_compile_group, [(g, portable, f"{tmp}/c{start}-{w}.so") for w, g in enumerate(groups)]))
            except BrokenProcessPool:
                raise EdgenasError("a compile worker died (out of memory, or killed); run the same command to go on") from None
            for group, (path, dtypes) in zip(groups, built):
                graphs = [(graph_function(i), job.shape, dtype) for i, (job, dtype) in enumerate(zip(group, dtypes))]
                with load.timing():  # the workers wait idle meanwhile
                    measured = backend.measure_functions(Path(path), graphs)
                yield from zip(group, measured)
                Path(path).unlink()


def measure_saving(key, backend, jobs: Sequence[GraphJob], save, *, desc: str, unit: str, total: int,
                   kept, remedy: str) -> LoadMeter:
    """`measure_jobs` with a progress bar, handing each measurement to `save(job, measurement)` as soon as it is
    taken, so that a kill, a Ctrl-C or a board lost for good loses none of them. An error or an interruption says
    what is kept (`kept()`, one phrase) and how to go on (`remedy`). Profile and validate both measure this way.
    Returns the load meter: what other processes took of the CPU meanwhile."""
    from edgenas.errors import Interrupted
    from edgenas.progress import bar

    load = LoadMeter(here=key.rpc is None)
    try:
        with bar(total, desc, initial=total - len(jobs), unit=unit) as progress:
            try:
                for job, measured in measure_jobs(key, backend, jobs, load):
                    save(job, measured)
                    progress.update()
            except EdgenasError as e:  # e.g. the RPC board is gone for good
                raise type(e)(f"{e}; {kept()}; {remedy}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {kept()}; {remedy}") from None
    return load
