"""Pruning toward a latency target, on real parts: the tiny search's exported winner and supernet, with a real ORT
table of the tiny space measured once and committed (`conftest.FIXED_TINY_TABLE`), so that pruning has channels to
save on any CPU; the pruned networks are measured here."""

import json
import random
import shutil
import signal
import subprocess
import time
from dataclasses import replace

import onnx
import pytest
import torch

from conftest import TINY_SPACE, assert_one_line_error, run_cli, shipped_table, start_cli
from edgenas.bundle import load_bundle
from edgenas.tables.pruned_latency import ChannelCurve, PrunedLatency, fastest_channels, unit_points
from edgenas.compress.prune_config import PruneConfig
from edgenas.tables.latency_model import LatencyModel
from edgenas.space import get_space
from edgenas.space.blocks import make_divisible
from edgenas.measure.timing import STATISTIC
from edgenas.tables.latency_table import LatencyTable

# tiny fine-tuning: the defaults (50 steps per candidate, 10 epochs) are for real runs
QUICK = ("--candidate-steps", 5, "--finetune-epochs", 1)


@pytest.fixture(scope="module")
def ratio(prunable) -> float:
    return prunable[1]


def _conv_channels(path) -> dict[str, int]:
    """Output channels of every convolution in an ONNX file, by node name."""
    model = onnx.load(path)
    init = {i.name: i for i in model.graph.initializer}
    return {n.name: init[n.input[1]].dims[0] for n in model.graph.node if n.op_type == "Conv"}


def _mids(specs) -> dict[int, int]:
    """Mid channels of every prunable unit of an unpruned network, by layer index."""
    return {i: s.mid if s.kind == "head" else make_divisible(s.cin * s.expand) for i, s in enumerate(specs) if s.kind != "stem"}


@pytest.fixture(scope="module")
def pruned(prunable, ratio, tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "pruned"
    return out, json.loads(run_cli("prune", prunable[0], "--out", out, "--prune-ratio", ratio, *QUICK, "--json", check=0).stdout)


def test_prune_reaches_the_target_and_reports_before_and_after(exported, prunable, pruned, ratio):
    root, export = exported
    out, r = pruned
    before, after = r["before"], r["after"]
    # the interpolating predictor gives the search's own prediction (the table's, corrected) for the unpruned network
    assert before["predicted_ms"] == pytest.approx(load_bundle(prunable[0])[1].latency.predicted_ms, rel=1e-9)
    assert r["target_ms"] == pytest.approx(ratio * before["predicted_ms"]) and after["predicted_ms"] <= r["target_ms"]
    # each step meets its goal, unless no unit could alone (then every candidate is a unit at its fewest channels)
    assert r["steps"] and all(s["predicted_ms"] <= s["goal_ms"] or all(c["predicted_ms"] > s["goal_ms"] for c in s["candidates"])
                              for s in r["steps"])
    assert before["measured_ms"] > 0 and after["measured_ms"] > 0 and r["not_measured"] is None
    # the flags reached the settings they name
    assert (r["config"]["candidate_steps"], r["config"]["distill"]["epochs"], r["config"]["steps"]) == (5, 1, PruneConfig.steps)
    assert after["macs"] < before["macs"] and after["params"] < before["params"]
    assert 0.1 < after["val_accuracy"] <= 1 and before["val_accuracy"] == export["accuracy"]["fp32"]
    # channels really left the graph: fewer convolution outputs, by what the report says was removed
    removed = sum(u["before"] - u["after"] for u in r["units"])
    assert removed > 0 and all(u["after"] % 8 == 0 and u["after"] >= 8 for u in r["units"])
    src, dst = _conv_channels(root / "fp32" / "model.onnx"), _conv_channels(out / "model.onnx")
    assert len(src) == len(dst) and sum(dst.values()) < sum(src.values())
    # the bundle: accuracy and latency of the pruned network, the stage in its history, no checkpoint left
    _, info = load_bundle(out)
    assert [h.stage for h in info.history] == ["export", "prune"]
    assert info.accuracy == {"fp32": after["val_accuracy"]} and info.latency.predicted_ms == after["predicted_ms"]
    assert info.history[-1].report["units"] == r["units"] and not (out / "prune-state.pt").exists()
    # the architecture names its pruned channels, so an artifact compiled from it is not taken for the searched one
    assert info.arch.encoding.startswith(export["arch"]["encoding"] + "/pruned:")
    assert info.arch.mid_channels == {str(u["layer"]): u["after"] for u in r["units"]}


def test_pruned_bundle_quantizes_and_is_not_pruned_again(pruned, tmp_path):
    out, r = pruned
    q = json.loads(run_cli("quantize", out, "--out", tmp_path / "int8", "--calibration", 20, "--json", check=0).stdout)
    assert q["fp32_accuracy"] == r["after"]["val_accuracy"] and q["int8_accuracy"] > 0.1
    assert_one_line_error(run_cli("prune", tmp_path / "int8", "--out", tmp_path / "again", "--prune-ratio", 0.9),
                          "int8", "prune, quantize", "before quantize")


def test_unreachable_target_names_the_fastest_reachable_latency(exported, tmp_path):
    root, export = exported
    _, info = load_bundle(root / "fp32")
    table = LatencyTable.load(info.latency.table)
    space, arch = get_space(TINY_SPACE), info.arch.arch
    specs = space.layers(arch)
    latency, mids = PrunedLatency(table, space, specs, PruneConfig.multiple), _mids(specs)
    fastest = latency(fastest_channels(latency, mids, PruneConfig.multiple))
    assert_one_line_error(run_cli("prune", root / "fp32", "--out", tmp_path / "p", "--target-ms", fastest * 0.9),
                          "out of reach", f"{fastest:.4f} ms", code=1)
    assert not (tmp_path / "p" / "model.onnx").exists()


def test_bad_input_gets_one_line_errors(exported, tmp_path):
    root, _ = exported
    fp32 = root / "fp32"
    assert_one_line_error(run_cli("prune", fp32, "--out", tmp_path / "p", "--prune-ratio", 1), "--prune-ratio 1", "below 1")
    assert_one_line_error(run_cli("prune", fp32, "--out", tmp_path / "p", "--prune-ratio", 0.8, "--target-ms", 1), "not both")
    assert_one_line_error(run_cli("prune", fp32, "--out", tmp_path / "p", "--prune-ratio", 1.5), "--prune-ratio 1.5")
    shutil.copy(fp32 / "model.onnx", tmp_path / "bare.onnx")
    assert_one_line_error(run_cli("prune", tmp_path / "bare.onnx", "--out", tmp_path / "p", "--prune-ratio", 0.8),
                          "bare.onnx", "edgenas export")
    assert_one_line_error(run_cli("prune", fp32, "--out", fp32, "--prune-ratio", 0.8), "input bundle")


def test_interpolation_on_the_shipped_digits_table():
    space = get_space("digits")
    table = LatencyTable.load(shipped_table("ort"))
    spec = next(s for s in space.all_layers() if s.kind == "mbconv" and s.cin == 32 and s.expand == 4)
    points = unit_points(table, space, spec)
    entries = {make_divisible(spec.cin * e): table.entries[replace(spec, expand=e).key][STATISTIC] for e in space.expand_ratios}
    assert points == entries and len(points) == 3
    curve = ChannelCurve(points)
    for mid, ms in entries.items():  # an entry's own width gives the entry
        assert curve(mid) == pytest.approx(ms, rel=1e-12)
    (m0, y0), (m1, y1), (m2, y2) = sorted(entries.items())
    assert curve((m0 + m1) / 2) == pytest.approx((y0 + y1) / 2)  # linear between neighbours
    assert curve(m0 - 8) == pytest.approx(y0 - 8 * max(0, y1 - y0) / (m1 - m0))  # extrapolated from the two smallest
    assert curve(-1000) == pytest.approx(0.05 * min(y0, y1, y2))  # floored, never zero
    assert ChannelCurve({64: 0.02})(16) == pytest.approx(0.005)  # one entry: proportional
    # noise made the wider entry faster: fewer channels than the smallest entry still never cost more than it
    falling = ChannelCurve({32: 0.020, 48: 0.018, 64: 0.030})
    assert falling(40) == pytest.approx(0.019) and falling(16) == pytest.approx(0.020) and falling(8) == pytest.approx(0.020)
    assert ChannelCurve({32: 0.020, 48: 0.030})(16) == pytest.approx(0.010)
    # kernels that take 16 channels at a time: 72 ran on a slow path, so pruned widths read from 96 and 144 alone
    slow = ChannelCurve({72: 0.027, 96: 0.019, 144: 0.0235}, multiple=16)
    assert slow(72) == 0.027 and slow(96) == 0.019  # an entry's own width gives the entry
    assert slow(80) == pytest.approx(0.019 - 16 * 0.0045 / 48) and slow(128) == pytest.approx(0.019 + 32 * 0.0045 / 48)
    assert ChannelCurve({72: 0.027, 96: 0.019}, multiple=16)(80) == pytest.approx(0.027 - 8 * 0.008 / 24)  # one aligned: all
    # the head: the last stage's other input width stands in at equal expansion MACs
    head = next(s for s in space.all_layers() if s.kind == "head" and s.cin == 64)
    assert unit_points(table, space, head) == {128.0: table.entries[head.key][STATISTIC],
                                               128 * 48 / 64: table.entries[replace(head, cin=48).key][STATISTIC]}
    # unpruned networks: exactly the search's predictor
    predictor, rng = LatencyModel(table, space), random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        specs = space.layers(arch)
        assert PrunedLatency(table, space, specs)(_mids(specs)) == predictor(arch)


def test_interrupted_prune_resumes_where_it_stopped(prunable, pruned, ratio, tmp_path):
    """Ctrl-C after the first step, then the same command: it goes on from the checkpoint and ends where an
    uninterrupted run ended (every random draw is seeded by step and unit)."""
    out = tmp_path / "p"
    args = ("prune", prunable[0], "--out", out, "--prune-ratio", ratio, *QUICK, "--json")
    proc = start_cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        state = out / "prune-state.pt"
        if state.exists() and torch.load(state, weights_only=False)["steps"]:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command to resume" in err, err
    r = json.loads(run_cli(*args, check=0).stdout)
    assert r["resumed_from_step"] >= 1
    first = pruned[1]
    assert [(s["layer"], s["channels"]) for s in r["steps"]] == [(s["layer"], s["channels"]) for s in first["steps"]]
    assert r["units"] == first["units"] and r["after"]["val_accuracy"] == pytest.approx(first["after"]["val_accuracy"], abs=0.002)
