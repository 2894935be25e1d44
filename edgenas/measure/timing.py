"""What a latency measurement is, and how it is taken, identically for every backend."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol


@dataclass(frozen=True)
class MeasureConfig:
    """Warm-up, then `repeat` samples, each the mean of enough calls to last `min_repeat_ms`.

    A pause of `cooldown_ms` after each sample spreads the samples over about 1/3 s: on a shared
    machine, bursts of interference last up to ~200 ms, and a shorter window can fall wholly inside one.
    """

    warmup_ms: float = 20.0
    repeat: int = 30
    min_repeat_ms: float = 1.0
    cooldown_ms: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Measurement:
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    count: int

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "Measurement":
        return cls(
            median_ms=statistics.median(samples_ms),
            mean_ms=statistics.fmean(samples_ms),
            std_ms=statistics.pstdev(samples_ms),
            min_ms=min(samples_ms),
            count=len(samples_ms),
        )


class Backend(Protocol):
    """Measures one ONNX graph with a fixed input shape, on one target."""

    name: str

    def measure(self, onnx_model: bytes, input_shape: tuple[int, ...]) -> Measurement: ...

    def describe(self) -> dict: ...

    def close(self) -> None: ...


def time_python_call(fn: Callable[[], object], cfg: MeasureConfig) -> Measurement:
    """Time a Python callable the way TVM's time_evaluator does: repeats of `number` back-to-back calls."""
    deadline = time.perf_counter() + cfg.warmup_ms / 1e3
    calls = 0
    while calls < 3 or time.perf_counter() < deadline:
        fn()
        calls += 1
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(1, math.ceil(cfg.min_repeat_ms / 1e3 / one))
    samples = []
    for _ in range(cfg.repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number * 1e3)
        time.sleep(cfg.cooldown_ms / 1e3)
    return Measurement.from_samples(samples)
