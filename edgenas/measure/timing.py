"""What a latency measurement is, and how it is taken, identically for every backend."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Protocol, TypeVar

T = TypeVar("T")

#: The statistic every latency edgenas adds up, compares or checks against a budget is taken in: on a shared machine,
#: bursts of interference move the median of a short window far more than the fastest repeat (tools/bench_tables.py).
STATISTIC = "min_ms"


@dataclass(frozen=True)
class MeasureConfig:
    """Warm-up, then `repeat` samples, each the mean of enough calls to last `min_repeat_ms`, at least
    `cooldown_ms` apart (a pause, or for TVM the samples of other graphs timed in turn)."""

    warmup_ms: float = 20.0
    repeat: int = 60
    min_repeat_ms: float = 2.0
    cooldown_ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_backend(cls, backend: str, repeat: int | None = None) -> "MeasureConfig":
        """Defaults chosen by measurement on a shared 2-core VM (the figures: docs/results/tables-accuracy-*.md):
        - ONNX Runtime's graphs take a fraction of a millisecond, and a pause leaves every sample starting cold:
          samples back to back predicted held-out networks best.
        - TVM's graphs take longer, and bursts of interference can cover a whole back-to-back window: pauses that
          spread the samples over a third of a second predicted them best.
        """
        cfg = cls(repeat=30, min_repeat_ms=1.0, cooldown_ms=10.0) if backend == "tvm" else cls()
        return replace(cfg, repeat=repeat) if repeat else cfg


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
        if cfg.cooldown_ms:
            time.sleep(cfg.cooldown_ms / 1e3)
    return Measurement.from_samples(samples)


#: seconds before each new reading of one over the limit: a burst of other load (a VM's neighbours, or its host taking
#: the CPU back) lasts seconds to tens of seconds, and a reading taken at once sits in the same burst
RECHECK_PAUSES_S = (3.0, 10.0, 30.0)
#: a reading whose median is more than this fraction above its minimum was taken in such a burst: its minimum too
#: may be, so it is measured again while pauses are left
NOISY = 0.10


#: pauses before measuring a network again whose reading was noisy, where a search compares readings (`settled`)
SETTLE_PAUSES_S = (3.0, 10.0)


def noisy(m) -> bool:
    """`m`: a `Measurement`, or its record (`Measurement.to_dict()`)."""
    median, low = (m["median_ms"], m["min_ms"]) if isinstance(m, dict) else (m.median_ms, m.min_ms)
    return median > low * (1 + NOISY)


def settled(measure: Callable[[], "Measurement"], pauses_s: tuple[float, ...] = SETTLE_PAUSES_S) -> "Measurement":
    """A measurement taken out of a burst of other load: a noisy one (`noisy`) is taken again after each pause, and
    the quietest (lowest median) is kept. A burst slows even a reading's fastest samples, so a search that compares
    networks by their readings would otherwise compare the machine's state instead."""
    best = measure()
    for pause in pauses_s:
        if not noisy(best):
            break
        time.sleep(pause)
        best = min(best, measure(), key=lambda m: m.median_ms)
    return best


def readings_against(limit_ms: float, measure: Callable[[], T], value: Callable[[T], float], first: T | None = None,
                     pauses_s: tuple[float, ...] = RECHECK_PAUSES_S, is_noisy: Callable[[T], bool] | None = None) -> list[T]:
    """One reading, or more when it is over `limit_ms`; the caller takes the lowest and keeps them all.

    Other load only ever adds time, and one measurement (a fraction of a second) can sit wholly inside a burst of it:
    "over the budget" is said on two independent readings, not one, a pause apart. While the readings over the limit
    are noisy (`is_noisy`: their own samples say the machine was busy), more are taken after longer pauses; a steady
    reading over the limit is the verdict. `first`: a reading already taken."""
    taken = [measure() if first is None else first]
    for i, pause in enumerate(pauses_s):
        last = taken[-1]
        if value(last) <= limit_ms or i and (is_noisy is None or not is_noisy(last)):
            break
        time.sleep(pause)
        taken.append(measure())
    return taken
