"""Profiling and validating through a real TVM RPC tracker and server on loopback."""

import json
import socket
import threading
import time

from pathlib import Path

from conftest import FAST, TINY_SPACE, assert_one_line_error, free_port, run_cli, table_file
from edgenas.space import get_space
from edgenas.tables.adapt import adapted_keys, probe_size
from edgenas.tables.latency_table import LatencyTable


def test_profile_over_rpc(tables, rpc_tracker):
    tracker, key = rpc_tracker
    args = ("profile", "--target", "host", "--space", TINY_SPACE, "--backend", "tvm", "--tables", tables,
            "--rpc-tracker", tracker, "--rpc-key", key, "--precision", "fp32", *FAST, "--json")
    out = json.loads(run_cli(*args, check=0).stdout)
    table = LatencyTable.load(out[0]["table"])
    assert out[0]["measured"] == len(table.entries) > 0
    assert table.meta["identity"]["measured_on"] == f"rpc:{key}" and table.meta["identity"]["device"] == f"rpc-{key}"
    assert table.meta["backend_info"]["rpc"] == {"tracker": tracker, "key": key}
    # the board's table sits apart from this machine's: local measurements never read or extend it
    local = table_file(tables, "tvm", "fp32")
    assert Path(out[0]["table"]).parent != local.parent and not local.exists()

    # a second board with no table measures over RPC only the few blocks a local CPU would, and adapts the rest
    # from the boards already measured (the first board's table, filed here under another device's name)
    path = Path(out[0]["table"])
    other = tables / "host" / "another-board" / path.relative_to(path.parents[1])
    other.parent.mkdir(parents=True)
    path.rename(other)
    new = json.loads(run_cli(*args, check=0).stdout)[0]
    probe = probe_size(get_space(TINY_SPACE))
    assert new["table"] == str(path) and new["measured"] == probe and new["adapted"] == new["entries"] - probe > 0
    board = LatencyTable.load(path)
    assert board.meta["identity"]["measured_on"] == f"rpc:{key}" and not board.missing(get_space(TINY_SPACE))
    assert board.meta["adapted"]["sources"] == [str(other.relative_to(tables))]
    assert len(adapted_keys(board)) == new["adapted"]

    data = json.loads(path.read_text())
    data["meta"]["identity"]["measured_on"] = "local"
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(*args[:-1], "--resume"), str(path), "measured_on", "refused")


def test_unknown_key_lists_registered_keys(tables, rpc_tracker):
    tracker, key = rpc_tracker
    assert_one_line_error(run_cli("profile", "--space", TINY_SPACE, "--backend", "tvm", "--tables", tables,
                                  "--rpc-tracker", tracker, "--rpc-key", "nosuchboard"), "nosuchboard", key, code=1)


def test_unreachable_tracker_fails_fast(tables):
    start = time.time()
    proc = run_cli("profile", "--space", TINY_SPACE, "--backend", "tvm", "--tables", tables,
                   "--rpc-tracker", f"127.0.0.1:{free_port()}", "--rpc-key", "k")
    assert_one_line_error(proc, "cannot reach the RPC tracker", code=1)
    assert time.time() - start < 30


def test_silent_tracker_times_out(tables):
    """A tracker that accepts connections but never answers must not hang the profile."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    conns = []
    threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True).start()
    start = time.time()
    proc = run_cli("profile", "--space", TINY_SPACE, "--backend", "tvm", "--tables", tables,
                   "--rpc-tracker", f"127.0.0.1:{srv.getsockname()[1]}", "--rpc-key", "k")
    assert_one_line_error(proc, "did not answer", code=1)
    assert time.time() - start < 40
    srv.close()


def test_bad_rpc_flags(tables):
    assert_one_line_error(run_cli("profile", "--tables", tables, "--rpc-key", "k"), "--rpc-tracker")
    assert_one_line_error(run_cli("profile", "--tables", tables, "--rpc-tracker", "nohostport", "--rpc-key", "k"), "HOST:PORT")
