"""Profiling with real ONNX Runtime and TVM measurements on a tiny space."""

import json
import signal
import subprocess
import time

import pytest

from conftest import DATA, FAST, TINY_SPACE, assert_one_line_error, run_cli, start_cli, table_file
from edgenas.jsonio import exclusive_lock
from edgenas.space import get_space
from edgenas.tables.latency_table import SCHEMA_VERSION, LatencyTable

SPACE = get_space(TINY_SPACE)
TWO_SIZES = DATA / "two_sizes_space.json"
N_ENTRIES = len(SPACE.all_layers())


def profile_args(tables, backend="ort", *extra):
    return ("profile", "--target", "host", "--space", TINY_SPACE, "--backend", backend, "--tables", tables, *FAST, *extra)


@pytest.mark.parametrize("backend", ["ort", "tvm"])
def test_profile_measures_every_block(tables, backend):
    out = json.loads(run_cli(*profile_args(tables, backend), "--json", check=0).stdout)
    assert out[0]["measured"] == N_ENTRIES and out[0]["reused"] == 0
    table = LatencyTable.load(table_file(tables, backend))
    assert set(table.entries) == {layer.key for layer in SPACE.all_layers()}
    for e in table.entries.values():
        assert 0 < e["min_ms"] <= e["median_ms"] and e["std_ms"] >= 0 and e["count"] == 5
    meta = table.meta
    assert meta["identity"]["space_hash"] == SPACE.hash and meta["identity"]["threads"] == 1
    assert meta["device"]["cpu"] and meta["versions"]["onnxruntime"] and meta["created"]


@pytest.mark.parametrize("backend", ["ort", "tvm"])
def test_measured_latency_follows_the_work(tmp_path, backend):
    """The tiny space's blocks are all a few microseconds, where per-call overhead and a busy neighbour decide
    the order; the same blocks at 256x the pixels must measure several times slower if the figures are timings."""
    space = get_space(str(TWO_SIZES))
    run_cli("profile", "--target", "host", "--space", TWO_SIZES, "--backend", backend, "--tables", tmp_path, *FAST, check=0)
    entries = LatencyTable.load(table_file(tmp_path, backend, space=str(TWO_SIZES))).entries
    assert set(entries) == {layer.key for layer in space.all_layers()}
    for kind in ("stem", "mbconv", "head"):
        small, big = sorted((l for l in space.all_layers() if l.kind == kind), key=lambda l: l.size)
        assert entries[big.key]["min_ms"] > 4 * entries[small.key]["min_ms"], (kind, entries[big.key], entries[small.key])


def test_existing_table_needs_resume_and_resume_measures_nothing_new(tables):
    run_cli(*profile_args(tables), check=0)
    assert_one_line_error(run_cli(*profile_args(tables)), "--resume")
    out = json.loads(run_cli(*profile_args(tables), "--resume", "--json", check=0).stdout)
    assert out[0]["measured"] == 0 and out[0]["reused"] == N_ENTRIES


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGINT, 130)])
def test_killed_profile_keeps_entries_and_resumes(tables, sig, code):
    # samples of 2 ms each: a profile of 100 per entry should not finish all its entries between the poll and the
    # signal; where a starved test process lets it (the table complete, exit 0), it is tried again, slower
    path = table_file(tables)
    for repeat in (100, 400, 1600):
        slow = ("--repeat", repeat)
        path.unlink(missing_ok=True)
        proc = start_cli(*profile_args(tables, "ort", *slow), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not (path.exists() and len(json.loads(path.read_text())["entries"]) >= 3):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if not (proc.returncode == 0 and len(LatencyTable.load(path).entries) == N_ENTRIES):
            break
    assert proc.returncode == code, err
    if sig == signal.SIGINT:
        assert "--resume" in err and "Traceback" not in err
    kept = LatencyTable.load(path).entries
    assert 3 <= len(kept) < N_ENTRIES
    out = json.loads(run_cli(*profile_args(tables, "ort", *slow), "--resume", "--json", check=0).stdout)
    assert out[0]["reused"] == len(kept) and out[0]["measured"] == N_ENTRIES - len(kept)
    after = LatencyTable.load(path).entries
    assert len(after) == N_ENTRIES and all(after[k] == v for k, v in kept.items())


def test_table_for_another_space_or_schema_is_refused(tables):
    run_cli(*profile_args(tables), check=0)
    path = table_file(tables)
    data = json.loads(path.read_text())
    data["meta"]["identity"]["space_hash"] = "0" * 16
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(*profile_args(tables), "--resume"), str(path), "space_hash", "refused")
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(*profile_args(tables), "--resume"), str(path), "schema version")
    data = json.loads(path.read_text())
    data["schema_version"], data["meta"]["identity"]["target"] = SCHEMA_VERSION, "rasp4b64"
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(*profile_args(tables), "--resume"), "target", "rasp4b64")
    path.write_text("{not json")
    assert_one_line_error(run_cli(*profile_args(tables), "--resume"), str(path), "not valid JSON")


def test_concurrent_profile_is_locked_out(tables):
    with exclusive_lock(table_file(tables)):
        assert_one_line_error(run_cli(*profile_args(tables)), "another edgenas process", code=1)
    assert not table_file(tables).exists()


def test_ort_refuses_a_board_it_cannot_run_on(tables):
    assert_one_line_error(run_cli("profile", "--target", "rasp4b64", "--backend", "ort", "--tables", tables), "aarch64", "board")
    assert_one_line_error(run_cli("profile", "--target", "rasp4b64", "--backend", "tvm", "--tables", tables), "--rpc-tracker")


def test_a_space_with_no_table_anywhere_estimates_its_profile_from_a_table_of_the_same_kind(tables, tmp_path):
    """A space fitted to the data has no table on any device: its profile's estimate takes the time per block of a
    table of the same backend and precision measured for another space, not a fixed guess."""
    import shutil

    from edgenas.space import get_space
    from edgenas.tables.key import TableKey
    from edgenas.tables.ready import GUESS_S_PER_BLOCK, _seconds_per_block
    from edgenas.targets import get_target

    run_cli(*profile_args(tables), check=0)
    stats = LatencyTable.load(table_file(tables)).meta["profile"]
    fitted = TableKey(get_target("host"), "ort", "int8", get_space("digits-c3-r32-n10"), 1)
    empty = tmp_path / "none"
    empty.mkdir()
    assert _seconds_per_block(fitted, empty) == GUESS_S_PER_BLOCK["ort"]
    mine = tmp_path / "mine"
    shutil.copytree(tables, mine)
    assert not fitted.path(mine).exists()
    assert _seconds_per_block(fitted, mine) == pytest.approx(stats["seconds"] / stats["measured"])
