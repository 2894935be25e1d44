"""MetaSchedule tuning through `edgenas compile`: the database reused, a board over loopback RPC, a time budget.
Apart from test_deploy.py so that the two files, each minutes long, run on the two workers side by side."""

import json
import time
from pathlib import Path

import numpy as np

from conftest import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parent.parent


def _small_qdq_model(tmp_path) -> bytes:
    """A two-convolution int8 model: few tuning tasks, so that tuning fits in a test."""
    import torch
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgenas.measure.onnx_export import to_onnx
    from edgenas.compile.qdq import Reader, quantize_qdq

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1))
    (tmp_path / "fp32.onnx").write_bytes(to_onnx(net, (1, 1, 8, 8)))
    quant_pre_process(str(tmp_path / "fp32.onnx"), str(tmp_path / "pre.onnx"), skip_symbolic_shape=True)
    cal = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    return quantize_qdq(tmp_path / "pre.onnx", tmp_path / "small.onnx", Reader("input", cal), "minmax", False, [])


def test_second_compile_reuses_the_tuning_database(tmp_path):
    _small_qdq_model(tmp_path)
    args = ("compile", tmp_path / "small.onnx", "--tune-trials", 6, "--tuning-db", tmp_path / "db", "--repeat", 3, "--json")
    first = json.loads(run_cli(*args, "--out", tmp_path / "a", check=0).stdout)["compile"]
    second = json.loads(run_cli(*args, "--out", tmp_path / "b", check=0).stdout)["compile"]
    assert first["quantized"] and first["tuning"]["tuned"] == first["tuning"]["tasks"] > 0 and first["tuning"]["reused"] == 0
    assert first["tuning"]["untuned"] == []  # every task got a working schedule
    assert second["tuning"]["tuned"] == 0 and second["tuning"]["reused"] == first["tuning"]["tasks"]
    assert (tmp_path / "db" / "database_tuning_record.json").stat().st_size > 0
    assert second["seconds"] < first["seconds"]
    # asking for more trials per task tunes again
    third = json.loads(run_cli(*args[:3], 12, *args[4:], "--out", tmp_path / "c", check=0).stdout)["compile"]
    assert third["tuning"]["tuned"] == first["tuning"]["tasks"]


def test_tuning_on_a_board_over_loopback_rpc(tmp_path, rpc_tracker):
    tracker, key = rpc_tracker
    _small_qdq_model(tmp_path)
    args = ("compile", tmp_path / "small.onnx", "--tuning-db", tmp_path / "db", "--rpc-tracker", tracker, "--rpc-key", key,
            "--repeat", 3, "--json")
    t = json.loads(run_cli(*args, "--tune-trials", 4, "--out", tmp_path / "a", check=0).stdout)["compile"]["tuning"]
    # every candidate ran on the board: MetaSchedule's RPCRunner through the tracker
    assert key in t["runner"] and tracker in t["runner"] and t["tuned"] == t["tasks"] > 0 and t["untuned"] == []
    # each task's default schedule was measured there first and committed, so tuning starts from it and must beat it
    assert t["seeded"] == t["tasks"] and t["trials"] >= t["tasks"] and not t["stopped_at_deadline"]
    # a board target with a cross compiler: each candidate is linked here into a shared library, which the board
    # loads as it is (it needs no compiler of its own); here the "cross" compiler is this machine's own g++
    cross = tmp_path / "cross.toml"
    cross.write_text((REPO / "targets" / "host.toml").read_text().replace('cross_compiler = ""', 'cross_compiler = "g++"'))
    c = json.loads(run_cli(*args[:3], tmp_path / "db-cross", *args[4:], "--target", cross, "--tune-trials", 4,
                           "--out", tmp_path / "cross", check=0).stdout)["compile"]["tuning"]
    assert key in c["runner"] and c["seeded"] == c["tasks"] > 0 and c["untuned"] == [] and c["trials"] >= c["tasks"]
    # a key no server registered fails before any tuning, naming the key, rather than candidate after candidate
    start = time.monotonic()
    bad = run_cli("compile", tmp_path / "small.onnx", "--tuning-db", tmp_path / "db", "--rpc-tracker", tracker,
                  "--rpc-key", "no-such-board", "--tune-trials", 400, "--out", tmp_path / "b")
    assert_one_line_error(bad, "no-such-board", key, code=1)
    assert time.monotonic() - start < 60 and not (tmp_path / "b").exists()


def test_tuning_stops_at_its_time_budget(tmp_path):
    _small_qdq_model(tmp_path)
    args = ("compile", tmp_path / "small.onnx", "--tuning-db", tmp_path / "db", "--repeat", 3, "--json")
    start = time.monotonic()
    proc = run_cli(*args, "--tune-minutes", 0.05, "--out", tmp_path / "a", check=0)
    t = json.loads(proc.stdout)["compile"]["tuning"]
    # TVM's C++ warnings (a line per candidate it cannot tensorize) go to the database's logs, not the terminal
    assert all(line.startswith("edgenas: ") for line in proc.stderr.splitlines() if line.strip()), proc.stderr[-2000:]
    assert (tmp_path / "db" / "logs" / "native.log").exists()
    assert t["stopped_at_deadline"] and 0 < t["trials"] < t["tasks"] * 1000 and t["untuned"] == []
    assert time.monotonic() - start < 240
    ledger = json.loads((tmp_path / "db" / "edgenas-tasks.json").read_text())
    assert sum(ledger.values()) == t["trials"]  # what each task got, so that a later compile goes on from there
    # the cost model learnt from those trials is kept, and the next run's search starts from it
    assert (tmp_path / "db" / "cost_model.tar").exists() and t["cost_model_samples"] == 0
    again = json.loads(run_cli(*args, "--tune-minutes", 0.05, "--out", tmp_path / "c", check=0).stdout)["compile"]["tuning"]
    assert 0 < again["cost_model_samples"] <= t["trials"]
    assert_one_line_error(run_cli(*args, "--tune-minutes", -1, "--out", tmp_path / "b"), "--tune-minutes", code=2)
