"""Shipping, end to end on real parts: search -> export -> quantize (gated on TVM) -> compile (TVM) -> run / bench."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import assert_matches_the_exact_reference, assert_one_line_error, cpu_target, output_step, run_cli
from edgenas.accuracy import bundle_split, model_inputs, ort_logits
from edgenas.bundle import load_bundle

REPO = Path(__file__).resolve().parent.parent


def test_export_and_quantize_record_measured_accuracies(shipped):
    root, exported, quantized, _ = shipped
    _, info = load_bundle(root / "int8")
    # the exported ONNX file scores what the search measured with supernet weights: the export is faithful
    searched = json.loads((root / "search" / "best.json").read_text())["val_accuracy"]
    assert exported["accuracy"]["fp32"] == quantized["fp32_accuracy"] == pytest.approx(searched) and searched > 0.1
    assert info.accuracy == {"fp32": quantized["fp32_accuracy"], "int8": quantized["int8_accuracy"]}
    # the gate measured the library that ships (the fixture quantizes for --backend tvm, target host)
    assert quantized["evaluated_with"] == {"runtime": "tvm", "target": "host", "stand_in": None}
    assert quantized["passed"] == (quantized["drop_points"] <= 1.0) and quantized["calibration_images"] == 100
    assert [h.stage for h in info.history] == ["export", "quantize"]
    ops = {n.op_type for n in onnx.load(root / "int8" / "model.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


@pytest.mark.parametrize("layout,cpu", [("NCHW", "host"), ("NHWC", "host"), ("NHWC", "avx2")])
def test_int8_tvm_agrees_with_the_exact_reference(shipped, layout, cpu, tmp_path):
    """The reference is exact arithmetic (the QDQ model in float), not another engine's int8 kernels: ONNX Runtime's
    saturate on x86 CPUs without VNNI (tests/test_cpu_classes.py shows it under qemu)."""
    from edgenas.accuracy import vm_logits
    from edgenas.compile.build import CompileConfig, compile_onnx_model

    root = shipped[0]
    data, info = load_bundle(root / "int8")
    compiled = compile_onnx_model(data, "int8", cpu_target(cpu, tmp_path), CompileConfig(layout=layout))
    x = model_inputs(info, bundle_split(info, "int8").val_x[:50])
    ours, ref = vm_logits(compiled.executable, x), ort_logits(data, x, exact=True)
    assert_matches_the_exact_reference(ours, ref, output_step(onnx.load_from_string(data)))


def test_ir_computes_convolutions_in_integers(shipped):
    from edgenas.compile.build import lower
    from edgenas.compile.frontend import to_relax
    from edgenas.compile.int8 import compute_ops, float_ops_on_quantized_path
    from edgenas.compile.passes import ElementwiseQDQ, IntegerQDQ, ToNHWC
    from edgenas.targets import get_target

    root = shipped[0]
    mod, _ = to_relax((root / "int8" / "model.onnx").read_bytes(), "int8")
    before = compute_ops(mod)
    assert set(before) == {"relax.nn.conv2d:float32", "relax.matmul:float32"} and float_ops_on_quantized_path(mod) == sum(before.values())
    lowered, quantized, ops, _ = lower(mod, get_target("host"), "NCHW")
    assert quantized and ops == {"relax.nn.conv2d:int32": before["relax.nn.conv2d:float32"], "relax.matmul:int32": 1}
    # every fused convolution kernel TVM compiles reads uint8 activations and int8 weights
    kernels = {gv.name_hint: {str(p.dtype) for p in f.params} for gv, f in lowered.functions.items() if "conv2d" in gv.name_hint}
    assert kernels and all({"uint8", "int8"} <= dtypes for dtypes in kernels.values()), kernels
    # NHWC: the layout is carried from the first convolution to the last; only the graph's input is transposed at run
    # time (weights and scales are transposed once, here)
    nhwc = ToNHWC()(ElementwiseQDQ()(IntegerQDQ()(mod)))
    calls = [b.value for block in nhwc["main"].body.blocks for b in block.bindings if hasattr(b.value, "op")]
    convs = [c for c in calls if c.op.name == "relax.nn.conv2d"]
    assert convs and all(c.attrs.data_layout == "NHWC" and c.attrs.kernel_layout == "OHWI" for c in convs)
    assert sum(c.op.name == "relax.permute_dims" for c in calls) == 1
    assert not {"relax.quantize", "relax.dequantize", "relax.clip", "relax.nn.pad"} & {c.op.name for c in calls}
    # the float model keeps its float convolutions
    fp32, _ = to_relax((root / "fp32" / "model.onnx").read_bytes(), "fp32")
    assert not lower(fp32, get_target("host"), "NCHW")[1]


@pytest.mark.parametrize("precision,cpu", [("int8", "host"), ("fp32", "host"), ("int8", "avx2")])
def test_untuned_build_schedules_every_convolution(shipped, precision, cpu, tmp_path):
    from edgenas.compile.build import lower, schedule
    from edgenas.compile.frontend import to_relax
    from edgenas.compile.schedules import MADD_256, UBSW_256, dot_products, naive_kernels
    from edgenas.compile.tune import compile_target

    target = cpu_target(cpu, tmp_path)
    tgt = compile_target(target)
    mod, _ = to_relax((shipped[0] / precision / "model.onnx").read_bytes(), precision)
    lowered, *_ = lower(mod, target, "NHWC")
    # before the rules, every convolution and matmul kernel is a naive loop nest, and the check sees it
    before = naive_kernels(lowered)
    assert len(before) >= 5 and all("conv2d" in k or "matmul" in k for k in before), before
    scheduled, seconds = schedule(lowered, tgt)
    assert naive_kernels(scheduled) == [] and list(seconds) == ["ApplyDefaultSchedule", "SplitLayoutRewritePreproc", "FoldConstant"]
    kernels = {gv.name_hint: f.script() for gv, f in scheduled.functions.items() if isinstance(f, tvm_prim_func())}
    dots = dot_products(tgt)  # on x86: vpdpbusd with VNNI, else vpmaddubsw on 7-bit weights or vpmaddwd on int16
    assert cpu == "host" or dots == (UBSW_256, MADD_256)
    if precision == "int8" and dots:  # most integer convolutions multiply through one of them
        assert sum(any(d.llvm in text for d in dots) for text in kernels.values()) >= len(before) // 2
    # weights were repacked once, at compile time: main calls no repacking kernel
    assert "weight_prepack" not in scheduled["main"].script()
    assert any(name.endswith("_prepacked") for name in kernels)


def tvm_prim_func():
    from tvm import tirx

    return tirx.PrimFunc


def test_artifact_round_trip(shipped, tmp_path):
    from edgenas.data import load_digits

    root, _, quantized, compiled = shipped
    art = root / "art"
    meta = json.loads((art / "metadata.json").read_text())
    assert meta["schema"] == "edgenas.artifact" and set(meta["files"]) == {"model.so", "model.onnx", "README.md"}
    assert meta["accuracy"]["int8"] == quantized["int8_accuracy"] and meta["compile"]["quantized"]
    # the library's own accuracy, run after it was compiled, is what the gate measured on the same TVM path
    assert meta["accuracy"]["artifact"] == quantized["int8_accuracy"]
    assert meta["latency"]["measured"]["median_ms"] > 0 and meta["latency"]["measured"]["count"] == 5
    assert meta["input"]["normalization"] and meta["classes"] == [str(i) for i in range(10)]
    assert meta["versions"]["apache-tvm"].startswith("0.27") and meta["target"]["name"] == "host"
    # a real image through the artifact gives the exact reference's prediction (the QDQ model in float)
    from PIL import Image

    digits = load_digits()
    Image.fromarray(digits.x[3, 0]).save(tmp_path / "digit.png")
    np.save(tmp_path / "digit.npy", digits.x[3, 0])
    _, info = load_bundle(root / "int8")
    expected = int(ort_logits((art / "model.onnx").read_bytes(), model_inputs(info, digits.x[3:4]), exact=True).argmax())
    for name in ("digit.png", "digit.npy"):
        r = json.loads(run_cli("run", art, "--input", tmp_path / name, "--json", check=0).stdout)
        assert r["class_index"] == expected and r["label"] == str(expected)
    b = json.loads(run_cli("bench", art, "--repeat", 5, "--json", check=0).stdout)
    assert b["median_ms"] > 0 and b["count"] == 5 and b["threads"] == 1
    # tampering and missing files are refused before anything is loaded
    copy = tmp_path / "copy"
    shutil.copytree(art, copy)
    with open(copy / "model.so", "ab") as f:
        f.write(b"\0")
    assert_one_line_error(run_cli("run", copy, "--input", tmp_path / "digit.png"), "model.so", "sha256")
    shutil.copy(art / "model.so", copy / "model.so")
    (copy / "model.onnx").unlink()
    assert_one_line_error(run_cli("bench", copy), "model.onnx", "missing")
    assert_one_line_error(run_cli("run", art, "--input", tmp_path / "nope.png"), "nope.png", "no such file")


def test_bench_over_loopback_rpc(shipped, rpc_tracker):
    tracker, key = rpc_tracker
    r = json.loads(run_cli("bench", shipped[0] / "art", "--rpc-tracker", tracker, "--rpc-key", key, "--repeat", 5, "--json",
                           check=0).stdout)
    assert r["median_ms"] > 0 and key in r["where"] and tracker in r["where"]


def test_symmetric_quantization_has_zero_points_of_zero(shipped, tmp_path):
    root = shipped[0]
    r = json.loads(run_cli("quantize", root / "fp32", "--out", tmp_path / "sym", "--symmetric", "--calibration", 50,
                           "--json", check=0).stdout)
    assert r["symmetric"]
    model = onnx.load(tmp_path / "sym" / "model.onnx")
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [init[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and len(n.input) > 2 and n.input[2] in init]
    assert zero_points and all(not zp.any() for zp in zero_points)
    assert {zp.dtype for zp in zero_points} <= {np.dtype("int8"), np.dtype("int32")}


def _outlier_bundle(src, dst, factor=1000.0):
    """The same function with one badly ranged activation: a depthwise channel scaled up by `factor` before
    its ReLU and the next 1x1 convolution's input scaled down to match (the classic case for equalisation)."""
    model = onnx.load(src / "model.onnx")
    init = {i.name: i for i in model.graph.initializer}
    nodes = list(model.graph.node)
    dw = next(n for n in nodes if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))
    relu = next(n for n in nodes if n.input and n.input[0] == dw.output[0])
    assert relu.op_type == "Relu"
    pw = next(n for n in nodes if n.op_type == "Conv" and relu.output[0] in n.input)

    def scale(name, fn):
        arr = onnx.numpy_helper.to_array(init[name]).copy()
        fn(arr)
        init[name].CopyFrom(onnx.numpy_helper.from_array(arr, name))

    scale(dw.input[1], lambda w: w.__setitem__(0, w[0] * factor))
    scale(dw.input[2], lambda b: b.__setitem__(0, b[0] * factor))
    scale(pw.input[1], lambda w: w.__setitem__((slice(None), 0), w[:, 0] / factor))
    dst.mkdir()
    onnx.save(model, dst / "model.onnx")
    shutil.copy(src / "model.json", dst / "model.json")


def test_accuracy_gate_tries_remedies_when_int8_loses_too_much(shipped, tmp_path):
    root = shipped[0]
    _outlier_bundle(root / "fp32", tmp_path / "outlier")
    proc = run_cli("quantize", tmp_path / "outlier", "--out", tmp_path / "q", "--json", check=0)
    r = json.loads(proc.stdout)
    assert r["fp32_accuracy"] == pytest.approx(shipped[2]["fp32_accuracy"], abs=0.002)  # the function did not change
    first = r["attempts"][0]
    assert first["method"] == "minmax" and first["drop_points"] > 1.0  # plain int8 breaks on the outlier
    assert r["passed"] and r["drop_points"] <= 1.0 and r["remedy"] != "none" and len(r["attempts"]) > 1
    _, info = load_bundle(tmp_path / "q")
    assert info.history[-1].report["remedy"] == r["remedy"] and info.accuracy["int8"] == r["int8_accuracy"]
    # the attempts that were thrown away printed nothing; the kept one says at most one line per thing it found
    assert len(proc.stderr.splitlines()) == len(set(proc.stderr.splitlines())) <= 2, proc.stderr
    # a gate nothing can pass fails, naming the loss, and keeps the best attempt for inspection
    # (int8 can, rarely, lose nothing; then the gate passes, and must say so)
    gate = run_cli("quantize", tmp_path / "outlier", "--out", tmp_path / "q0", "--max-drop", 0, "--calibration", 20, "--json")
    if gate.returncode == 0:
        passed = json.loads(gate.stdout)
        assert passed["passed"] and passed["drop_points"] <= 0, passed
    else:
        assert_one_line_error(gate, "loses", "--max-drop 0", code=1)  # one line: no attempt's warnings before it
        lost = float(re.search(r"loses (-?[0-9.]+) points", gate.stderr).group(1))
        assert lost > 0 and (tmp_path / "q0" / "model.onnx").exists()


def _graph_model(node, inputs, outputs):
    return onnx.helper.make_model(onnx.helper.make_graph([node], "g", inputs, outputs),
                                  opset_imports=[onnx.helper.make_opsetid("", 17)]).SerializeToString()


def test_models_edgenas_cannot_take_get_one_line_errors(tmp_path):
    vi = onnx.helper.make_tensor_value_info
    f32 = onnx.TensorProto.FLOAT
    (tmp_path / "corrupt.onnx").write_bytes(b"not a model at all")
    assert_one_line_error(run_cli("compile", tmp_path / "corrupt.onnx", "--out", tmp_path / "o"), "corrupt.onnx", "not a valid ONNX")
    (tmp_path / "celu.onnx").write_bytes(_graph_model(onnx.helper.make_node("Celu", ["x"], ["y"], name="act"),
                                                      [vi("x", f32, [1, 4])], [vi("y", f32, [1, 4])]))
    assert_one_line_error(run_cli("compile", tmp_path / "celu.onnx", "--out", tmp_path / "o"), "Celu", "'act'")
    (tmp_path / "dyn.onnx").write_bytes(_graph_model(onnx.helper.make_node("Relu", ["x"], ["y"]),
                                                     [vi("x", f32, ["n", 3, "h", 8])], [vi("y", f32, ["n", 3, "h", 8])]))
    assert_one_line_error(run_cli("compile", tmp_path / "dyn.onnx", "--out", tmp_path / "o"), "'x'", "'h'", "--input-shape")
    # the same model compiles once the shape is given, and a bare ONNX file has no accuracy to carry
    r = json.loads(run_cli("compile", tmp_path / "dyn.onnx", "--out", tmp_path / "o", "--input-shape", "1,3,4,8",
                           "--repeat", 3, "--json", check=0).stdout)
    assert r["input"]["shape"] == [1, 3, 4, 8] and not r["compile"]["quantized"] and r["accuracy"] == {}
    assert_one_line_error(run_cli("quantize", tmp_path / "dyn.onnx", "--out", tmp_path / "q"), "dyn.onnx", "model.json")


def test_a_reading_over_the_budget_is_measured_again(shipped):
    """The verdict of build and search: a first reading over the budget gets a second, independent measurement (here of
    the artifact, for real); one within the budget does not."""
    from edgenas.artifact.artifact import load_artifact
    from edgenas.artifact.runtime import bench
    from edgenas.measure.timing import MeasureConfig, readings_against

    art = load_artifact(shipped[0] / "art")
    cfg, calls = MeasureConfig.for_backend("tvm", 5), []

    def measure():
        calls.append(bench(art, cfg, 1, None))
        return calls[-1]

    first = measure()
    assert readings_against(first["min_ms"] * 100, measure, lambda r: r["min_ms"], first=first) == [first] and len(calls) == 1
    taken = readings_against(first["min_ms"] / 100, measure, lambda r: r["min_ms"], first=first)
    assert taken == calls == [first, calls[1]] and calls[1]["count"] == 5 and calls[1]["measured"] >= first["measured"]
    # without a first reading, it takes one
    assert readings_against(first["min_ms"] * 100, measure, lambda r: r["min_ms"]) == [calls[2]] and len(calls) == 3


def test_readings_over_the_budget_go_on_while_the_machine_is_noisy():
    """Readings over the limit taken in a burst of load (their median well above their minimum) are taken again after
    each pause; a steady one over the limit, or one within it, ends it."""
    from edgenas.measure.timing import noisy, readings_against

    def run(sequence, pauses=(0, 0, 0)):
        it = iter(sequence)
        return readings_against(1.0, lambda: next(it), lambda r: r["min_ms"], pauses_s=pauses, is_noisy=noisy)

    burst, steady_over, within = {"min_ms": 1.2, "median_ms": 1.5}, {"min_ms": 1.1, "median_ms": 1.12}, {"min_ms": 0.9, "median_ms": 0.95}
    assert run([burst, burst, within]) == [burst, burst, within]
    assert run([burst, steady_over, within]) == [burst, steady_over]
    assert run([steady_over, steady_over, within]) == [steady_over, steady_over]
    assert run([burst] * 5) == [burst] * 4  # the pauses run out
    assert run([within]) == [within]


def test_a_reading_taken_in_a_burst_of_load_is_taken_again_and_the_quietest_kept():
    from edgenas.measure.timing import Measurement, settled

    def run(sequence):
        it = iter(sequence)
        return settled(lambda: next(it), pauses_s=(0, 0))

    burst = Measurement(median_ms=0.24, mean_ms=0.25, std_ms=0.04, min_ms=0.20, count=30)
    quiet = Measurement(median_ms=0.19, mean_ms=0.19, std_ms=0.002, min_ms=0.188, count=30)
    assert run([quiet]) is quiet
    assert run([burst, quiet]) is quiet
    assert run([burst, burst, quiet]) is quiet
    assert run([burst, burst, burst]) is burst  # the pauses run out: the quietest of them
