"""A board that drops in the middle of a profile: a real tracker and rpc_server on loopback, the server killed mid-run."""

import json
import subprocess
import time

import pytest

from conftest import table_file, FAST, TINY_SPACE, assert_one_line_error, run_cli, start_cli, start_rpc_server, start_tracker, stop
from edgenas.measure.tvm import RPC_RETRIES
from edgenas.space import get_space
from edgenas.tables.latency_table import LatencyTable


class Board:
    """A tracker of its own and one rpc_server registered at it, which a test may kill and start again."""

    key = "drop-test"

    def __init__(self):
        self._tracker, self.port = start_tracker()
        self.server = None
        try:
            self.restart()
        except BaseException:
            stop(self._tracker)
            raise

    @property
    def tracker(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rpc(self):
        from edgenas.rpc import RPCSettings

        return RPCSettings("127.0.0.1", self.port, self.key)

    def drop(self) -> None:
        """Kill the server and the session worker it forked, as a board losing power would."""
        stop(self.server)

    def restart(self, wait: bool = True) -> None:
        self.server = start_rpc_server(self.port, self.key, wait=wait)

    def close(self) -> None:
        stop(self.server)
        stop(self._tracker)


@pytest.fixture
def board():
    b = Board()
    yield b
    b.close()


def _profile_args(tables, board):
    return ("profile", "--target", "host", "--space", TINY_SPACE, "--backend", "tvm", "--tables", tables,
            "--rpc-tracker", board.tracker, "--rpc-key", board.key, "--precision", "fp32", *FAST)


def _profile_until(tmp_path, args, table, entries: int):
    """Start `edgenas profile` and return (process, stderr path) once the table holds `entries` entries."""
    err = tmp_path / "stderr.txt"
    with open(err, "w") as f:
        proc = start_cli(*args, stdout=subprocess.DEVNULL, stderr=f)
    deadline = time.time() + 60
    while not (table.exists() and len(json.loads(table.read_text())["entries"]) >= entries):
        assert proc.poll() is None, f"profile ended early (exit {proc.returncode}): {err.read_text()}"
        assert time.time() < deadline, "no entries measured within 60 s"
        time.sleep(0.1)
    assert proc.poll() is None, "profile finished before the board was dropped"
    return proc, err


def _finish(proc, err, timeout=90) -> subprocess.CompletedProcess:
    proc.wait(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err.read_text())


def _drop_mid_profile(tables, board, tmp_path):
    """A profile over RPC with its board dropped after 3 entries: (args, table, entries in all, process, stderr file)."""
    args = _profile_args(tables, board)
    table = table_file(tables, "tvm", "fp32", rpc=board.rpc)
    proc, err = _profile_until(tmp_path, args, table, 3)
    board.drop()
    return args, table, len(get_space(TINY_SPACE).all_layers()), proc, err


def test_board_lost_for_good_keeps_entries_and_resume_measures_the_rest(tables, board, tmp_path):
    args, table, total, proc, err = _drop_mid_profile(tables, board, tmp_path)
    line = assert_one_line_error(_finish(proc, err), f"key '{board.key}'", f"tracker {board.tracker}",
                                 f"{RPC_RETRIES} retries", str(table), "--resume", code=1)
    kept = LatencyTable.load(table).entries
    assert 3 <= len(kept) < total
    assert f"{len(kept)} of {total} entries are saved" in line

    board.restart()
    out = json.loads(run_cli(*args, "--resume", "--json", check=0, timeout=120).stdout)[0]
    assert (out["entries"], out["reused"], out["measured"]) == (total, len(kept), total - len(kept))
    final = LatencyTable.load(table).entries
    assert len(final) == total
    assert all(final[k] == v for k, v in kept.items())  # what was measured before the drop is kept, not measured again


def test_board_back_within_retry_window_finishes_the_profile(tables, board, tmp_path):
    _, table, total, proc, err = _drop_mid_profile(tables, board, tmp_path)
    assert len(LatencyTable.load(table).entries) < total  # the rest can only be measured on a new session
    board.restart(wait=False)  # registers again a second or two later, within the back-off
    done = _finish(proc, err)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(LatencyTable.load(table).entries) == total
