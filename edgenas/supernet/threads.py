"""How many threads torch computes on while other processes share the machine (training, sub-network evaluation)."""

from __future__ import annotations

import math
import os
from collections import Counter

import torch

from edgenas.measure.load import LoadWindow


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class AdaptivePool:
    """torch's pool, a thread per core, waits at every operator for its slowest thread, so a core that another process
    holds stalls every step of a small network. Every `window_s` the pool is sized to the cores the other processes leave
    (a core counts as theirs from half its time on), never above the size torch started with, which honours
    OMP_NUM_THREADS and torch.set_num_threads."""

    def __init__(self, window_s: float = 1.0):
        self.most, self.window_s = torch.get_num_threads(), window_s
        self.load = LoadWindow() if self.most > 1 else None
        self.steps: Counter[int] = Counter()  # pool size -> steps computed on it

    def adapt(self) -> None:
        """Call once per step: a clock read, and every `window_s` two reads of /proc."""
        if self.load is not None and (other := self.load.read(self.window_s)) is not None:
            size = min(self.most, max(1, _cores() - math.floor(other + 0.5)))
            if size != torch.get_num_threads():
                torch.set_num_threads(size)
        self.steps[torch.get_num_threads()] += 1

    def restore(self) -> None:
        """Back to the size torch started with, for whatever the process does next (a build goes on to search)."""
        torch.set_num_threads(self.most)

    def __enter__(self) -> "AdaptivePool":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def take_record(self) -> dict[str, int]:
        """The steps per pool size since the last record (for an epoch's history), largest pool first."""
        record = {str(n): self.steps[n] for n in sorted(self.steps, reverse=True)}
        self.steps.clear()
        return record
