"""A whole network's latency as it ships, measured as the tables measure: one network, or several side by side.

`key` is the table's `tables.key.TableKey`: its backend, precision and target say how the network ships.

The build's decisions (whether pruning paid, which runtime and precision ship) compare networks measured here: side by
side, in one run, so that every network sees the same machine state."""

from __future__ import annotations

import hashlib
import statistics
import tempfile
from pathlib import Path

from edgenas.measure.onnx_export import shipped_onnx
from edgenas.measure.timing import STATISTIC, MeasureConfig, settled

#: ONNX Runtime and OpenVINO time one graph at a time: the models take turns this many times, each keeps its median
ROUNDS = 3


class ShippedMeter:
    """fp32 networks' latencies as they ship at the table's precision, measured as the table measures (its statistic),
    with one backend: a network read again is neither quantized nor compiled again (the backend keeps its library).
    Each reading is `settled`: one taken in a burst of other load is taken again."""

    def __init__(self, key, cfg: MeasureConfig | None = None):
        self.key, self.cfg = key, cfg or MeasureConfig.for_backend(key.backend)
        self._backend, self._shipped = None, {}  # sha256 of the fp32 graph -> the graph as it ships

    def __call__(self, onnx_model: bytes, shape: tuple[int, ...]) -> float:
        digest = hashlib.sha256(onnx_model).hexdigest()
        if digest not in self._shipped:
            self._shipped[digest] = shipped_onnx(onnx_model, shape, self.key.precision, self.key.target)
        if self._backend is None:
            self._backend = self.key.make_backend(self.cfg)
        return getattr(settled(lambda: self._backend.measure(self._shipped[digest], shape)), STATISTIC)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._backend, self._shipped = None, {}

    def __enter__(self) -> "ShippedMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def measure_ms(onnx_model: bytes, shape: tuple[int, ...], key, cfg: MeasureConfig | None = None) -> float:
    """An fp32 network's latency as it ships at the table's precision, measured once with a backend of its own."""
    with ShippedMeter(key, cfg) as meter:
        return meter(onnx_model, shape)


def measure_side_by_side(key, cfg: MeasureConfig, models: dict[str, bytes],
                         shapes: dict[str, tuple[int, ...]]) -> dict[str, float]:
    """Each model's latency (ms, the tables' statistic) on its input shape (`shapes`, by name: two networks of a
    space may differ in resolution) with `key`'s backend, in one run that gives every model the same machine state:
    for TVM, compiled as `compile` compiles them into one library and timed in turns (`time_functions`); for ONNX
    Runtime and OpenVINO, measured in alternation, `ROUNDS` times."""
    names, backend = list(models), key.make_backend(cfg)
    try:
        if key.is_tvm:
            from edgenas.compile.build import CompileConfig, compile_onnx_graphs, graph_function
            from edgenas.measure.tvm import export_library

            executable, inputs = compile_onnx_graphs([models[n] for n in names], key.target,
                                                     CompileConfig(0, key.layout, key.tuning_db))
            with tempfile.TemporaryDirectory(prefix="edgenas-side-by-side-") as tmp:
                library = export_library(executable, Path(tmp) / "models.so", key.target)
                found = backend.measure_functions(library, [(graph_function(i), shapes[n], inp.dtype)
                                                            for i, (n, inp) in enumerate(zip(names, inputs))])
            return {n: round(getattr(m, STATISTIC), 6) for n, m in zip(names, found)}
        runs: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(ROUNDS):
            for n in names:
                runs[n].append(getattr(backend.measure(models[n], shapes[n]), STATISTIC))
        return {n: round(statistics.median(v), 6) for n, v in runs.items()}
    finally:
        backend.close()
