"""Training's thread pool against real competing processes (busy loops), read from /proc like the load meter."""

import subprocess
import sys
import time

import pytest
import torch

from edgenas.measure.load import LoadWindow
from edgenas.supernet.threads import AdaptivePool, _cores

BUSY = [sys.executable, "-c", "while True: pass"]


@pytest.fixture
def pool_of_two():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(_cores() < 2, reason="one core: there is no pool to shrink")
def test_the_pool_shrinks_to_one_thread_while_other_processes_hold_the_cores(pool_of_two):
    threads = AdaptivePool(window_s=0.5)
    assert threads.most == 2
    busy = [subprocess.Popen(BUSY) for _ in range(_cores())]
    try:
        deadline = time.time() + 10
        while torch.get_num_threads() == 2 and time.time() < deadline:
            threads.adapt()
            time.sleep(0.05)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert torch.get_num_threads() == 1
    record = threads.take_record()
    assert set(record) <= {"2", "1"} and record["1"] == 1 and sum(record.values()) > 1 and not threads.steps
    threads.restore()
    assert torch.get_num_threads() == 2


def test_a_pool_of_one_is_left_alone_and_reads_no_load():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        threads = AdaptivePool(window_s=0.0)
        busy = subprocess.Popen(BUSY)
        try:
            for _ in range(3):
                threads.adapt()
        finally:
            busy.kill()
            busy.wait()
        assert threads.load is None and torch.get_num_threads() == 1 and threads.take_record() == {"1": 3}
    finally:
        torch.set_num_threads(before)


def test_the_load_window_sees_a_busy_loop():
    window = LoadWindow()
    assert window.read(min_s=60) is None  # too soon
    busy = subprocess.Popen(BUSY)
    try:
        time.sleep(1.0)
        other = window.read(min_s=0.5)
    finally:
        busy.kill()
        busy.wait()
    # a busy loop takes a whole core while this process sleeps (the other test worker may add more)
    assert other is not None and other > 0.6
