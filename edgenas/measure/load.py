"""How much of the CPU other processes took while edgenas timed: a table measured on a busy machine reads slow, and
unevenly so from block to block, and nothing in its samples says it. Linux only: elsewhere, and for boards timed over
RPC, nothing is known.

Written here because psutil's per-process and system CPU times would need a dependency for two reads of /proc.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

#: Other processes' mean use of the CPU while timing, in cores, above which a measurement is flagged. An idle VM reads
#: a few hundredths (system daemons); a test suite or a compile beside it reads about one.
BUSY_CORES = 0.25

_PROC_STAT = Path("/proc/stat")


def _machine_busy_s() -> float | None:
    """CPU seconds every process on the machine has used since boot (time stolen by a hypervisor included)."""
    try:
        fields = _PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: already inside user and nice]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    t = os.times()  # this process's threads, and the children it has waited for (a linker, say)
    return t.user + t.system + t.children_user + t.children_system


def _snapshot() -> tuple[float, float, float] | None:
    """(every process's CPU seconds, this process's, wall clock), or None where /proc/stat cannot be read."""
    busy = _machine_busy_s()
    return None if busy is None else (busy, _own_s(), time.perf_counter())


def _others_since(mark: tuple[float, float, float]) -> tuple[float, float, tuple[float, float, float]]:
    """Other processes' CPU seconds and the wall seconds since `mark`, and the new mark."""
    now = _snapshot()
    return max(0.0, (now[0] - mark[0]) - (now[1] - mark[1])), now[2] - mark[2], now


class LoadMeter:
    """Adds up, over the timing phases it wraps, the CPU time other processes used and the wall time."""

    def __init__(self, here: bool = True):
        """`here`: the timing runs on this machine's CPU (not on a board over RPC, which this cannot see)."""
        self.other_s = self.wall_s = 0.0
        self.known = here and _machine_busy_s() is not None

    @contextmanager
    def timing(self):
        """Wrap code that times and does nothing else in other processes (a worker pool must be idle)."""
        if not self.known:
            yield
            return
        mark = _snapshot()
        try:
            yield
        finally:
            other, wall, _ = _others_since(mark)
            self.other_s += other
            self.wall_s += wall

    @property
    def cores(self) -> float | None:
        """Other processes' mean use of the CPU while timing, in cores; None where it cannot be known."""
        # /proc/stat counts in ticks of 10 ms: over less than 0.3 s, two reads could be off by a sixth of a core
        return round(self.other_s / self.wall_s, 3) if self.known and self.wall_s >= 0.3 else None


class LoadWindow:
    """Other processes' use of the CPU since the last read: for long work that adapts to it as it goes."""

    def __init__(self):
        self._mark = _snapshot()

    def read(self, min_s: float = 1.0) -> float | None:
        """In cores, since the last read; None until `min_s` has passed (ticks are 10 ms) or where it cannot be known."""
        if self._mark is None or time.perf_counter() - self._mark[2] < min_s:
            return None
        other, wall, self._mark = _others_since(self._mark)
        return other / wall


def busy_note(cores: float | None) -> str | None:
    """What to tell the user about a measurement taken beside `cores` of other work, or None when it was quiet."""
    if cores is None or cores <= BUSY_CORES:
        return None
    return (f"other processes used {cores:.2f} of a core while it was timed, so its latencies may read slow; "
            f"measure it again on a quiet machine")
