"""The meter that tells a measurement taken on a busy machine: real processes, real /proc/stat."""

import contextlib
import json
import subprocess
import sys
import os
import time

import pytest

from conftest import TINY_SPACE, run_cli, table_file
from edgenas.measure.load import BUSY_CORES, LoadMeter, busy_note

pytestmark = pytest.mark.skipif(not LoadMeter().known, reason="no /proc/stat: the load is not known here")


@contextlib.contextmanager
def busy_process():
    """Another process spinning on one core."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)  # started and spinning
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def metered(work) -> float:
    meter = LoadMeter()
    with meter.timing():
        work()
    return meter.cores


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_meter_counts_other_processes_and_not_its_own():
    quiet = metered(lambda: time.sleep(1.0))
    if quiet > (os.cpu_count() or 1) - 0.7:  # e.g. the other test worker and a build: one more process cannot show
        pytest.skip(f"other processes already keep {quiet:.2f} of {os.cpu_count()} cores busy")
    own = metered(lambda: spin(1.0))  # this process busy on one core: not another process's load
    with busy_process():
        other = metered(lambda: time.sleep(1.0))
    assert own < quiet + 0.5, (quiet, own)
    assert other > quiet + 0.6, (quiet, other)
    assert busy_note(other) and "quiet machine" in busy_note(other)
    assert busy_note(None) is None and busy_note(BUSY_CORES) is None
    assert LoadMeter().cores is None  # nothing timed: nothing known


def test_a_profile_timed_beside_a_busy_process_says_so(tables):
    args = ("profile", "--target", "host", "--space", TINY_SPACE, "--backend", "ort", "--tables", tables,
            "--threads", "1", "--repeat", "30")
    with busy_process():
        proc = run_cli(*args, check=0)
    notes = [ln for ln in proc.stderr.splitlines() if "other processes used" in ln]
    assert len(notes) == 1 and "--overwrite" in notes[0] and str(table_file(tables)) in notes[0], proc.stderr
    assert json.loads(table_file(tables).read_text())["meta"]["profile"]["other_load_cores"] > BUSY_CORES
