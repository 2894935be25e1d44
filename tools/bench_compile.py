#!/usr/bin/env python
"""Benchmark `edgenas compile` on `host`: ONNX Runtime against TVM, fp32 against int8, untuned against tuned.

Prints one JSON object. Models: the network `edgenas search` finds on the bench supernet at --budget-ms
(exported and quantized by edgenas, with its validation accuracies), and MobileNetV2 (width 1.0, random
weights, 224x224 and 96x96; its int8 version is calibrated on random inputs, so it has no accuracy).
For each: latency with ONNX Runtime fp32 and int8, TVM fp32 and int8 untuned, TVM tuned with --trials
per model and build (a fresh database each), and the time of a second compile that reuses the database.

    .venv/bin/python tools/bench_compile.py --supernet runs/bench-supernet --trials 2000   # hours on 2 cores
    .venv/bin/python tools/bench_compile.py --models searched --trials 500 --builds fp32:NCHW,int8:NHWC
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.bundle import load_bundle  # noqa: E402
from edgenas.compile.build import CompileConfig, compile_onnx_model  # noqa: E402
from edgenas.compress.quantize import QuantizeConfig, quantize  # noqa: E402
from edgenas.compile.qdq import Reader, quantize_qdq  # noqa: E402
from edgenas.measure.onnx_export import to_onnx  # noqa: E402
from edgenas.measure.ort import OrtBackend  # noqa: E402
from edgenas.measure.timing import MeasureConfig  # noqa: E402
from edgenas.measure.tvm import time_main  # noqa: E402
from edgenas.paths import tables_dir  # noqa: E402
from edgenas.search.export import export_search  # noqa: E402
from edgenas.search.search import run_space, search  # noqa: E402
from edgenas.tables.key import TableKey  # noqa: E402
from edgenas.targets import get_target  # noqa: E402
from edgenas.versions import versions  # noqa: E402
from mobilenetv2 import MobileNetV2  # noqa: E402

MODELS = ("searched", "mbv2-224", "mbv2-96")


def searched(work: Path, supernet: Path, budget_ms: float, target) -> tuple[bytes, bytes, dict]:
    key = TableKey(target, "ort", "int8", run_space(supernet), target.thread_count())
    report = search(supernet, key, budget_ms, tables_dir(), work / "search")
    export_search(work / "search", work / "fp32")
    q = quantize(work / "fp32", work / "int8", QuantizeConfig())
    info = {"arch": report.encoding, "budget_ms": budget_ms, "fp32_accuracy": q.fp32_accuracy, "int8_accuracy": q.int8_accuracy}
    return load_bundle(work / "fp32")[0], load_bundle(work / "int8")[0], info


def mobilenetv2(work: Path, size: int) -> tuple[bytes, bytes, dict]:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    shape = (1, 3, size, size)
    fp32 = to_onnx(MobileNetV2().eval(), shape)
    (work / "fp32.onnx").write_bytes(fp32)
    quant_pre_process(str(work / "fp32.onnx"), str(work / "pre.onnx"), skip_symbolic_shape=True)
    cal = np.random.default_rng(0).standard_normal((32, *shape[1:])).astype(np.float32)
    int8 = quantize_qdq(work / "pre.onnx", work / "int8.onnx", Reader("input", cal), "minmax", False, [])
    return fp32, int8, {"width": 1.0, "input": list(shape), "weights": "random"}


def tvm_latency(onnx_model: bytes, target, cfg: CompileConfig, measure: MeasureConfig) -> dict:
    import tvm

    c = compile_onnx_model(onnx_model, "model", target, cfg)
    m = time_main(c.executable, tvm.cpu(0), c.input.shape, measure)
    return {"median_ms": round(m.median_ms, 5), "min_ms": round(m.min_ms, 5), "compile_seconds": c.seconds,
            "ops": c.ops, "tuning": c.tuning.to_dict() if c.tuning else None}


def bench_model(name: str, fp32: bytes, int8: bytes, target, args, work: Path) -> dict:
    ort = OrtBackend(target, MeasureConfig(), args.threads)
    shape = tuple(d.dim_value for d in __import__("onnx").load_from_string(fp32).graph.input[0].type.tensor_type.shape.dim)
    row = {"ort_fp32_ms": round(ort.measure(fp32, shape).median_ms, 5), "ort_int8_ms": round(ort.measure(int8, shape).median_ms, 5)}
    measure = MeasureConfig.for_backend("tvm")
    for precision, layout in args.builds:
        model, key = {"fp32": fp32, "int8": int8}[precision], f"tvm_{precision}_{layout}"
        row[f"{key}_untuned"] = tvm_latency(model, target, CompileConfig(0, layout, work / f"{key}-untuned-db"), measure)
        if args.trials:
            db = work / f"{key}-db"
            row[f"{key}_tuned"] = tvm_latency(model, target, CompileConfig(args.trials, layout, db), measure)
            t0 = time.perf_counter()
            compile_onnx_model(model, "model", target, CompileConfig(args.trials, layout, db))
            row[f"{key}_reuse_compile_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"{name} {key}: {json.dumps({k: v for k, v in row.items() if k.startswith(key)})}", file=sys.stderr)
    return {**row, "summary": summary(row)}


def summary(row: dict) -> dict:
    """The issue's targets: TVM int8 against TVM fp32 and against ONNX Runtime int8, fastest build of each."""
    best = {}
    for precision in ("fp32", "int8"):
        runs = {k: v["median_ms"] for k, v in row.items() if k.startswith(f"tvm_{precision}_") and isinstance(v, dict)}
        if runs:
            key = min(runs, key=runs.get)
            best[precision] = {"build": key, "median_ms": runs[key]}
    out = {"fastest": best}
    if "int8" in best:
        out["tvm_int8_vs_ort_int8"] = round(best["int8"]["median_ms"] / row["ort_int8_ms"], 3)
        if "fp32" in best:
            out["tvm_int8_speedup_over_tvm_fp32"] = round(best["fp32"]["median_ms"] / best["int8"]["median_ms"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", type=Path, default=Path("runs/bench-supernet"), help="a trained run (tools/bench_search.py)")
    add_to_parser(ap, "budget-ms", "threads", budget_ms=0.2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--builds", default="fp32:NCHW,fp32:NHWC,int8:NCHW,int8:NHWC", help="TVM builds, precision:layout")
    ap.add_argument("--trials", type=int, default=2000, help="MetaSchedule trials per model and build; 0: untuned only")
    ap.add_argument("--work", type=Path, default=None, help="keep databases and models here [default: a temporary directory]")
    args = ap.parse_args()
    args.builds = [tuple(b.split(":")) for b in args.builds.split(",")]
    target = get_target("host")
    args.threads = args.threads or target.thread_count()
    import os

    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    out = {"target": target.name, "threads": args.threads, "trials": args.trials, "versions": versions(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="edgenas-bench-") as tmp:
        root = args.work or Path(tmp)
        for name in args.models.split(","):
            work = root / name
            work.mkdir(parents=True, exist_ok=True)
            fp32, int8, info = searched(work, args.supernet, args.budget_ms, target) if name == "searched" else \
                mobilenetv2(work, int(name.split("-")[1]))
            out["models"][name] = {**info, **bench_model(name, fp32, int8, target, args, work)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
