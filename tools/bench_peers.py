#!/usr/bin/env python
"""The compiled artifact against the runtimes a user would use without edgenas, side by side, 1 thread, on `host`.

For each model, in one process: ONNX Runtime fp32 and int8, OpenVINO fp32 and int8 (when the optional `bench`
extra is installed; it reads the same ONNX files), and TVM fp32 and int8 compiled as `edgenas build` compiles
them (untuned: the default schedules), plus TVM tuned (--trials MetaSchedule trials and/or --tune-minutes per build) when given.
The engines are timed in interleaved rounds, so that a change in the machine's state is shared by all of them.
Prints JSON (median ms per engine; each TVM build as a ratio of ONNX Runtime int8 and OpenVINO int8, and TVM int8 as a
ratio of TVM fp32; the precision `build --precision auto` would ship by that ratio; and, for `main`, the artifact the
build shipped) and draws one bar chart.

CPU classes (--class avx2|avx-vnni|avx512-vnni|native): each class is timed natively on this machine, both engines at
that class. TVM compiles for the class's LLVM CPU (haswell, alderlake, icelake-server; native: this CPU), and its int8
model is quantized as a build ships it for that class (7-bit weights without VNNI). OpenVINO is capped to the class
with ONEDNN_MAX_CPU_ISA, which must be set before the process starts: the tool starts itself again with it set, and
reports the kernels that ran (the runtime model's primitiveType, e.g. jit_avx2_I8) so that the cap can be checked.
ONNX Runtime cannot be capped: its figures stay this machine's class, and no ratio against them is given for another
class. A class whose instructions this CPU lacks cannot be timed here, and the tool says so in one line.

Models: `main`, the network the README's main command ships (give its run directory with --build: its pruned
fp32 model and its int8 model), and MobileNetV2 1.0 at 96x96 and 224x224 (random weights, int8 calibrated on
random inputs by ONNX Runtime's quantizer, as `tools/bench_compile.py` makes them).

    .venv/bin/python tools/bench_peers.py --build runs/build --chart peers.png
    .venv/bin/python tools/bench_peers.py --models mbv2-96 --tune-minutes 20     # tuned too, 20 minutes a build
    .venv/bin/python tools/bench_peers.py --models mbv2-96,mbv2-224 --class avx2  # both engines as on an AVX2 CPU
    .venv/bin/python tools/bench_peers.py --gpu                                   # this machine's NVIDIA GPU

GPU (--gpu): TVM compiled for `nvidia-gpu` at this GPU's architecture (fp32, fp16, int8) against ONNX Runtime's CUDA and
TensorRT providers (where this onnxruntime has them: `onnxruntime-gpu`) and PyTorch's CUDA eager mode, batch 1, one
stream, for `main` and MobileNetV2 at 224x224: `tools/gpu_check.py`'s side by side, whose report it prints.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")  # before the TVM runtime starts its thread pool

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile import mobilenetv2  # noqa: E402
from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.bundle import load_bundle  # noqa: E402
from edgenas.compile.build import CompileConfig, compile_onnx_model  # noqa: E402
from edgenas.errors import BadInput  # noqa: E402
from edgenas.measure.ort import make_session  # noqa: E402
from edgenas.compile.tune import compile_target  # noqa: E402
from edgenas.compile.schedules import cpu_class  # noqa: E402
from edgenas.compile.qdq import Reader, pre_process, quantize_qdq, seven_bit_for  # noqa: E402
from edgenas.tables.device import cpu_model  # noqa: E402
from edgenas.tables.deployment import TIE  # noqa: E402
from edgenas.targets import get_target  # noqa: E402
from edgenas.versions import versions  # noqa: E402

MODELS = ("main", "mbv2-96", "mbv2-224")
PEERS = ("ort_int8", "openvino_int8")
#: --class: OpenVINO's ONEDNN_MAX_CPU_ISA cap and the LLVM CPU TVM compiles for (None: this machine's own)
CLASSES = {"avx2": ("AVX2", "haswell"), "avx-vnni": ("AVX2_VNNI", "alderlake"),
           "avx512-vnni": ("AVX512_CORE_VNNI", "icelake-server"), "native": (None, None)}
ISA_VAR = "ONEDNN_MAX_CPU_ISA"


def start_at_class(name: str) -> None:
    """Start this tool again with OpenVINO capped to the class (oneDNN reads the cap once, when it loads)."""
    isa = CLASSES[name][0]
    if os.environ.get(ISA_VAR) == isa:
        return
    env = {k: v for k, v in os.environ.items() if k != ISA_VAR}
    if isa:
        env[ISA_VAR] = isa
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main_network(build: Path) -> tuple[bytes, bytes, dict]:
    """The shipped network of a `build` run: the pruned fp32 model (the searched one when pruning was skipped)
    and the int8 model of the build (its artifact's, when it shipped int8)."""
    fp32_dir = build / "pruned" if (build / "pruned" / "model.onnx").exists() else build / "fp32"
    if not (fp32_dir / "model.onnx").exists():
        raise BadInput(f"{fp32_dir / 'model.onnx'}: not found; give --build the run directory of `edgenas build`")
    fp32, info = load_bundle(fp32_dir)
    int8 = load_bundle(build / "int8")[0] if (build / "int8" / "model.onnx").exists() else None
    return fp32, int8, {"build": str(build), "input": list(info.input_shape), "accuracy": info.accuracy}


def calibration_of(shape: tuple, build: Path | None) -> np.ndarray:
    """The main network's training images (as `quantize` calibrates), or random inputs for MobileNetV2."""
    if build is not None:
        from edgenas.accuracy import bundle_split, model_inputs

        info = load_bundle(build / "int8" if (build / "int8").exists() else build / "fp32")[1]
        return model_inputs(info, bundle_split(info, str(build)).train_x[:300])
    return np.random.default_rng(0).standard_normal((32, *shape[1:])).astype(np.float32)


def quantized_for(fp32: bytes, shape: tuple, build: Path | None, seven_bit: bool, work: Path) -> bytes:
    """int8 as a build ships it for a class: 7-bit weights where TVM's fastest kernels need them."""
    import onnx

    name = onnx.load_from_string(fp32).graph.input[0].name
    return quantize_qdq(pre_process(work, fp32), work / f"int8-{int(seven_bit)}.onnx",
                        Reader(name, calibration_of(shape, build)), "minmax", False, [], seven_bit)


def openvino_runner(model: bytes, x: np.ndarray):
    """OpenVINO as a build ships it (`measure.openvino`), and the kernels that ran; None where it is not installed."""
    from edgenas.measure import openvino

    if openvino.missing():
        return None
    compiled = openvino.compile_model(model, threads=1)
    return openvino.runner(compiled, x), {"kernels": openvino.kernels(compiled), "max_cpu_isa": openvino.isa_cap()}


def tvm_runner(model: bytes, x: np.ndarray, cfg: CompileConfig, target):
    import tvm
    from tvm import relax

    compiled = compile_onnx_model(model, "model", target, cfg)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    tx = tvm.runtime.tensor(x)
    info = {"compile_seconds": compiled.seconds, "ops": compiled.ops}
    if compiled.tuning:
        info["tuning"] = compiled.tuning.to_dict()
    return (lambda: vm["main"](tx)), info


def time_interleaved(runners: dict, rounds: int, calls: int, warmup: int) -> dict:
    samples = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(warmup):
            run()
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(calls):
                t0 = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - t0)
    return {name: round(float(np.median(s)) * 1e3, 4) for name, s in samples.items()}


def tvm_target(llvm_cpu: str | None):
    """`host`, or `host` compiled for another LLVM CPU that this machine can run (an older x86, say)."""
    host = get_target("host")
    return dataclasses.replace(host, tvm_target={**host.tvm_target, "mcpu": llvm_cpu}) if llvm_cpu else host


def artifact_runner(build: Path, x: np.ndarray):
    """The artifact `build` shipped, loaded as a user loads it: the TVM runtime and its library."""
    import tvm
    from tvm import relax

    from edgenas.artifact.artifact import load_artifact

    art = load_artifact(build / "artifact")
    if art.meta.runtime == "ort":
        sess = make_session(art.model_file.read_bytes(), threads=1)
        feed = {sess.get_inputs()[0].name: x}
        return (lambda: sess.run(None, feed)), {"runtime": "ort"}
    if art.meta.runtime == "openvino":
        from edgenas.measure import openvino

        return openvino.runner(openvino.compile_model(art.model_file.read_bytes()), x), {"runtime": "openvino"}
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(art.library)), tvm.cpu())
    tx = tvm.runtime.tensor(x)
    return (lambda: vm["main"](tx)), {"runtime": "tvm", "precision": "int8" if art.meta.compile.quantized else "fp32",
                                       "llvm_target": art.meta.target.tvm_target}


def bench_model(name: str, fp32: bytes, int8: bytes | None, shape: tuple, args, work: Path) -> dict:
    target, compiled_for = get_target("host"), tvm_target(args.llvm_cpu)
    build = args.build if name == "main" else None
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    seven = seven_bit_for(compiled_for)
    # what a user without edgenas runs (ONNX Runtime's quantizer, full-range weights), and what a build ships here
    peer_int8 = int8 if int8 is not None else quantized_for(fp32, shape, build, False, work)
    ours_int8 = quantized_for(fp32, shape, build, True, work) if seven else peer_int8
    runners, info = {}, {}
    for precision, peer_model, model in (("fp32", fp32, fp32), ("int8", peer_int8, ours_int8)):
        sess = make_session(peer_model, target, 1)
        feed = {sess.get_inputs()[0].name: x}
        runners[f"ort_{precision}"] = (lambda s=sess, f=feed: s.run(None, f))
        ov = openvino_runner(peer_model, x)
        if ov:
            runners[f"openvino_{precision}"], info[f"openvino_{precision}"] = ov
        runners[f"tvm_{precision}"], info[f"tvm_{precision}"] = tvm_runner(model, x, CompileConfig(tuning_db=work / "untuned"),
                                                                        compiled_for)
        if args.trials or args.tune_minutes:
            cfg = CompileConfig(trials=args.trials, tuning_db=work / f"tuned-{precision}", tune_minutes=args.tune_minutes)
            runners[f"tvm_{precision}_tuned"], info[f"tvm_{precision}_tuned"] = tvm_runner(model, x, cfg, compiled_for)
        print(f"{name} {precision}: built", file=sys.stderr)
    if build is not None and (build / "artifact").exists() and args.cpu_class == "native" and not args.llvm_cpu:
        runners["shipped"], info["shipped"] = artifact_runner(build, x)
    ms = time_interleaved(runners, args.rounds, args.calls, args.warmup)
    # ONNX Runtime runs this machine's kernels whatever the class: a peer only at this machine's own class
    ort_at_class = cpu_class(compile_target(compiled_for)) == cpu_class(compile_target(target))
    at_class = [e for e in ms if e.startswith("openvino_") or (e.startswith("ort_") and ort_at_class)]
    ratios = {f"{tvm}/{peer}": round(ms[tvm] / ms[peer], 3)
              for tvm in ms if tvm.startswith("tvm_") for peer in PEERS if peer in at_class}
    ratios["tvm_int8/tvm_fp32"] = round(ms["tvm_int8"] / ms["tvm_fp32"], 3)
    ships = "int8" if ms["tvm_int8"] <= ms["tvm_fp32"] * (1 + TIE) else "fp32"
    tvm_best = min(("tvm_int8", "tvm_fp32"), key=ms.get)
    peer_best = min(at_class, key=ms.get) if at_class else None
    headline = {"fastest_tvm": tvm_best, "fastest_peer": peer_best,
                "ratio": round(ms[tvm_best] / ms[peer_best], 3) if peer_best else None,
                # what `build --backend auto` would ship of these, by the same rule
                "auto_ships": min(("tvm_int8", "tvm_fp32", *at_class), key=ms.get)}
    return {"median_ms": ms, "fastest_tvm_over_fastest_peer": headline, "ratios": ratios, "auto_precision_ships": ships,
            "int8_weights": "7-bit" if seven else "8-bit", "engines_at_class": ["tvm_int8", "tvm_fp32", *at_class],
            "engines": info}


def chart(results: dict, path: Path, title: str) -> None:
    """One chart per class: per model, the fastest TVM build against the fastest of each peer at that class, as a
    ratio of the fastest peer (below 1: TVM is faster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    groups = {"TVM (fastest precision)": "tvm_", "ONNX Runtime": "ort_", "OpenVINO": "openvino_"}
    colors = {"TVM (fastest precision)": "tab:green", "ONNX Runtime": "tab:gray", "OpenVINO": "tab:blue"}
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(models), 4))
    width = 0.8 / len(groups)
    for g, (label, prefix) in enumerate(groups.items()):
        xs, ys = [], []
        for m, model in enumerate(models):
            r = results[model]
            ms = {e: v for e, v in r["median_ms"].items() if e in r["engines_at_class"] and e.startswith(prefix)}
            peer = r["fastest_tvm_over_fastest_peer"]["fastest_peer"]
            if ms and peer:
                xs.append(m + (g - 1) * width)
                ys.append(min(ms.values()) / r["median_ms"][peer])
        bars = ax.bar(xs, ys, width, label=label, color=colors[label])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("median latency / fastest peer's (1 thread)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def bench_gpu(args) -> None:
    """The GPU peers, through the device check's prepare and run (one implementation of the GPU side by side)."""
    import gpu_check
    from edgenas.targets import gpu_here

    if not gpu_here():
        sys.exit("bench_peers: error: --gpu: TVM sees no NVIDIA GPU here (on a GPU machine without the compiler, "
                 "tools/gpu_check.sh prepare and run time the same)")
    models = [m for m in args.models.split(",") if m in ("main", "mbv2-224")] or ["main", "mbv2-224"]
    build = args.build if "main" in models and (args.build / "int8").exists() else None
    out = {"benchmark": "peers-gpu", "date": time.strftime("%Y-%m-%d"),
           "command": " ".join(["tools/bench_peers.py", *sys.argv[1:]]), "models": {}}
    with tempfile.TemporaryDirectory(prefix="edgenas-peers-gpu-") as tmp:
        gpu_check.prepare(Path(tmp), None, build, True, False, models, minutes=60)
        gpu_check.run(Path(tmp), out, minutes=60)
    print(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--build", type=Path, default=Path("runs/build"), help="the main command's run directory (for `main`)")
    ap.add_argument("--trials", type=int, default=0, help="MetaSchedule trials per TVM build; 0: untuned only")
    add_to_parser(ap, "tune-minutes")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=50, help="timed calls per engine per round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--chart", type=Path, default=None, help="write the class's chart here (PNG)")
    ap.add_argument("--class", dest="cpu_class", choices=list(CLASSES), default="native",
                    help="time both engines as on a CPU of this class: OpenVINO capped with ONEDNN_MAX_CPU_ISA, TVM "
                         "compiled for the class's LLVM CPU (ONNX Runtime stays this machine's)")
    ap.add_argument("--llvm-cpu", default=None, help="compile TVM for this LLVM CPU instead of the class's")
    ap.add_argument("--work", type=Path, default=None, help="keep models and databases here [default: a temporary directory]")
    ap.add_argument("--gpu", action="store_true", help="time this machine's NVIDIA GPU instead (see above)")
    args = ap.parse_args()
    if args.gpu:
        return bench_gpu(args)
    start_at_class(args.cpu_class)
    args.llvm_cpu = args.llvm_cpu or CLASSES[args.cpu_class][1]
    compiled_for = tvm_target(args.llvm_cpu)
    if not compiled_for.runs_here:
        sys.exit(f"bench_peers: error: --class {args.cpu_class}: this CPU ({cpu_model()}) lacks the instructions of "
                 f"LLVM's {args.llvm_cpu}, so that class cannot be timed here")
    host_class = cpu_class(compile_target(get_target("host")))
    tvm_class = cpu_class(compile_target(compiled_for))
    out = {"benchmark": "peers", "date": time.strftime("%Y-%m-%d"), "command": " ".join(["tools/bench_peers.py", *sys.argv[1:]]),
           "cpu": cpu_model(), "class": args.cpu_class, "llvm_cpu": str(compile_target(compiled_for).mcpu),
           "classes": {"tvm": tvm_class, "openvino": os.environ.get(ISA_VAR) or f"native ({host_class})",
                       "onnxruntime": host_class,
                       "note": None if tvm_class == host_class else
                       f"ONNX Runtime ran this machine's {host_class} kernels: its figures are not of the {tvm_class} "
                       f"class, and no ratio against them is given"},
           "threads": 1, "trials": args.trials,
           "tune_minutes": args.tune_minutes, "versions": versions(), "models": {}}
    if out["versions"].get("openvino") == "not installed":
        out["openvino"] = "not installed: pip install -e '.[openvino]'"
    with tempfile.TemporaryDirectory(prefix="edgenas-peers-") as tmp:
        root = args.work or Path(tmp)
        for name in args.models.split(","):
            work = root / name
            work.mkdir(parents=True, exist_ok=True)
            if name == "main":
                fp32, int8, info = main_network(args.build)
            else:
                size = int(name.split("-")[1])
                fp32, int8, info = mobilenetv2(work, size)
            out["models"][name] = {**info, **bench_model(name, fp32, int8, tuple(info["input"]), args, work)}
    if args.chart:
        chart(out["models"], args.chart, f"{args.cpu_class} class ({out['cpu']}; TVM {out['llvm_cpu']}, "
                                         f"OpenVINO {out['classes']['openvino']}), {out['date']}")
        out["chart"] = str(args.chart)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
