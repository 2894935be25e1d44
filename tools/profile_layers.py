#!/usr/bin/env python
"""Where the time goes, TVM against OpenVINO, per kind of layer: the stem, pointwise (1x1) and other convolutions,
depthwise convolutions, the head (matmul) and the rest, for one ONNX model in one precision, 1 thread.

TVM: every kernel call of one inference, timed with the VM's instrument hook (the 0.27 VM has no profile=), each
kernel put in a kind by its name and its operands' shapes. OpenVINO: its own per-layer counters (PERF_COUNT,
`get_profiling_info`), by layer type and the kernel it ran. The two fuse differently (OpenVINO folds activations and
adds into convolutions, TVM fuses epilogues into the anchor kernel), so compare kinds, not single layers.

    .venv/bin/python tools/profile_layers.py --model mbv2-224 --precision int8 [--llvm-cpu haswell] [--runs 50]
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python tools/profile_layers.py --model mbv2-224 --llvm-cpu haswell

Prints JSON: per kind, TVM ms and OpenVINO ms per inference, and the slowest TVM kernels.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile import mobilenetv2  # noqa: E402
from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.compile.build import CompileConfig, compile_onnx_model  # noqa: E402
from edgenas.measure import openvino  # noqa: E402
from edgenas.compile.qdq import Reader, pre_process, quantize_qdq, seven_bit_for  # noqa: E402
from edgenas.tables.device import cpu_model  # noqa: E402
from edgenas.targets import get_target  # noqa: E402

KINDS = ("stem", "pointwise", "conv_kxk", "depthwise", "head", "other")


def tvm_kind(name: str, args) -> str:
    shapes = [tuple(a.shape) for a in args if hasattr(a, "shape")]
    if "group_conv2d" in name:
        return "depthwise"
    if "conv2d" in name:
        data, weight = shapes[0], shapes[1] if len(shapes) > 1 else ()
        if data and data[-1] <= 4:
            return "stem"
        # the weight as the default rules repack it: (o/lanes, kh, kw, i/depth, lanes[, depth]) or OHWI; a depthwise
        # convolution (relax's conv2d with groups) reads one input channel per output channel
        if len(weight) >= 4 and weight[1] == weight[2] == 1:
            return "pointwise"
        return "depthwise" if len(weight) >= 4 and weight[3] == 1 else "conv_kxk"
    if "matmul" in name or "dense" in name:
        return "head"
    return "other"


def ov_kind(layer_type: str, shapes: dict) -> str:
    t = layer_type.lower()
    if "groupconvolution" in t or "dw" in shapes.get("exec", ""):
        return "depthwise"
    if "convolution" in t:
        return "stem" if shapes.get("in_channels", 99) <= 4 else ("pointwise" if shapes.get("k") == 1 else "conv_kxk")
    if "fullyconnected" in t or "matmul" in t:
        return "head"
    return "other"


def profile_tvm(model: bytes, x: np.ndarray, target, runs: int) -> tuple[dict, list, float]:
    import tvm
    from tvm import relax

    compiled = compile_onnx_model(model, "model", target, CompileConfig(tuning_db=Path(tempfile.mkdtemp()) / "none"))
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    tx = tvm.runtime.tensor(x)
    for _ in range(10):
        vm["main"](tx)
    t0 = time.perf_counter()
    for _ in range(runs):
        vm["main"](tx)
    end_to_end = (time.perf_counter() - t0) / runs * 1e3
    totals, kinds, started = defaultdict(float), {}, {}

    def instrument(func, name, before_run, ret, *args):
        if before_run:
            kinds.setdefault(name, tvm_kind(name, args))
            started[name] = time.perf_counter()
        else:
            totals[name] += time.perf_counter() - started.pop(name)

    vm.set_instrument(instrument)
    for _ in range(runs):
        vm["main"](tx)
    by_kind = defaultdict(float)
    for name, seconds in totals.items():
        by_kind[kinds[name]] += seconds / runs * 1e3
    slowest = sorted(((n, s / runs * 1e3) for n, s in totals.items()), key=lambda kv: -kv[1])[:40]
    return dict(by_kind), [{"kernel": n, "kind": kinds[n], "ms": round(ms, 4)} for n, ms in slowest], end_to_end


def profile_openvino(model: bytes, x: np.ndarray, runs: int) -> tuple[dict, list, float]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model=model), "CPU", {
        "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
        "PERF_COUNT": True})
    request = compiled.create_infer_request()
    for _ in range(10):
        request.infer({0: x})
    # the runtime model: each executed node's type, kernel and input shapes, to put a convolution in its kind
    info = {}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        name = op.get_friendly_name()
        shapes = {"exec": rt["primitiveType"].astype(str) if "primitiveType" in rt else ""}
        if op.get_input_size() > 1:
            data, weight = op.get_input_partial_shape(0), op.get_input_partial_shape(1)
            if data.rank.get_length() == 4 and weight.rank.is_static and weight.rank.get_length() >= 4:
                shapes["in_channels"] = data[1].get_length()
                shapes["k"] = weight[-1].get_length()
        info[name] = (rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name(), shapes)
    by_kind, per_layer = defaultdict(float), defaultdict(float)
    t0 = time.perf_counter()
    for _ in range(runs):
        request.infer({0: x})
    end_to_end = (time.perf_counter() - t0) / runs * 1e3
    for _ in range(runs):
        request.infer({0: x})
        for p in request.get_profiling_info():
            if p.status != p.Status.EXECUTED:
                continue
            layer, shapes = info.get(p.node_name, (p.node_type, {"exec": p.exec_type}))
            ms = p.real_time.total_seconds() * 1e3 / runs
            by_kind[ov_kind(layer, shapes)] += ms
            per_layer[(p.node_name, p.exec_type)] += ms
    slowest = sorted(per_layer.items(), key=lambda kv: -kv[1])[:12]
    return dict(by_kind), [{"layer": n, "kernel": e, "ms": round(ms, 4)} for (n, e), ms in slowest], end_to_end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mbv2-224", help="mbv2-<size>, or a path to an fp32 .onnx file")
    add_to_parser(ap, "precision")
    ap.add_argument("--llvm-cpu", default=None, help="compile TVM for this LLVM CPU (default: this machine's)")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgenas-layers-"))
    if args.model.startswith("mbv2-"):
        fp32, int8, info = mobilenetv2(work, int(args.model.split("-")[1]))
        shape = tuple(info["input"])
    else:
        import onnx

        fp32, int8 = Path(args.model).read_bytes(), None
        dims = onnx.load_from_string(fp32).graph.input[0].type.tensor_type.shape.dim
        shape = tuple(d.dim_value or 1 for d in dims)
    host = get_target("host")
    target = dataclasses.replace(host, tvm_target={**host.tvm_target, "mcpu": args.llvm_cpu}) if args.llvm_cpu else host
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    models = {"fp32": fp32}
    if args.precision == "int8":
        import onnx

        name = onnx.load_from_string(fp32).graph.input[0].name
        reader = Reader(name, np.random.default_rng(0).standard_normal((32, *shape[1:])).astype(np.float32))
        peer = int8 or quantize_qdq(pre_process(work, fp32), work / "peer.onnx", reader, "minmax", False, [], False)
        ours = quantize_qdq(pre_process(work, fp32), work / "ours.onnx", reader, "minmax", False, [], True) \
            if seven_bit_for(target) else peer
        models = {"tvm": ours, "openvino": peer}
    else:
        models = {"tvm": fp32, "openvino": fp32}
    tvm_kinds, tvm_slowest, tvm_e2e = profile_tvm(models["tvm"], x, target, args.runs)
    out = {"cpu": cpu_model(), "model": args.model, "precision": args.precision,
           "llvm_cpu": args.llvm_cpu or "native", "openvino_cap": openvino.isa_cap(),
           "tvm": {"end_to_end_ms": round(tvm_e2e, 4), "by_kind_ms": {k: round(v, 4) for k, v in tvm_kinds.items()},
                   "slowest": tvm_slowest}}
    if not openvino.missing():
        ov_kinds, ov_slowest, ov_e2e = profile_openvino(models["openvino"], x, args.runs)
        out["openvino"] = {"end_to_end_ms": round(ov_e2e, 4), "by_kind_ms": {k: round(v, 4) for k, v in ov_kinds.items()},
                           "slowest": ov_slowest}
        out["tvm_over_openvino_by_kind"] = {k: round(tvm_kinds.get(k, 0) / ov_kinds[k], 2)
                                            for k in KINDS if ov_kinds.get(k)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
