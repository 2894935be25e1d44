#!/usr/bin/env python
"""The NVIDIA GPU device check (issue 34): what edgenas compiles for a GPU, run on one, within a time limit.

In two halves, so that the GPU machine needs TVM's runtime only, as a board does, and not its compiler (a GPU
machine with no package index cannot install the 100 MB compiler wheel; the runtime is a few MB):

- `prepare DIR` (here, with the compiler): for `nvidia-gpu` at --arch (default: this machine's GPU, else sm_90),
  the main command's network (--build RUN: the bundles a build shipped; else the default space's largest network,
  random weights) and MobileNetV2 1.0 at 224x224 (random weights), each in fp32, fp16 (one float16 ONNX file) and
  int8 (QDQ, symmetric, as CUDA targets quantize; dp4a where the GPU has it), compiled to PTX and exported; random
  inputs and ONNX Runtime's CPU outputs on them (the reference); a slice of a GPU latency table: the tests' tiny
  space's blocks compiled into one library as `profile` compiles them, and a few whole networks into another.
  `--runtime` adds TVM's runtime without its compiler, to carry.
- `run DIR` (on the GPU machine, runtime only): each library run on the GPU against the reference, timed with TVM's
  time_evaluator on the device, side by side with ONNX Runtime's CUDA and TensorRT providers where this onnxruntime
  has them (and DIR holds the ONNX files) and PyTorch's CUDA eager mode (cuDNN) where torch sees the GPU; the table
  slice timed block by block and each network's sum of its blocks compared with the network measured whole.
- `all` (a machine with both): prepare into a temporary folder, then run.

Each writes one JSON report (--report). With no GPU, `run` and `all` stop before their first GPU call, say what they
would do in one line and exit 3.

    bash tools/gpu_check.sh                                   # on a GPU machine with the project set up: `all`
    bash tools/gpu_check.sh prepare .gpucheck --arch sm_90    # here: what to carry to one (with the ffi wheel)
    bash tools/gpu_check.sh run .gpucheck                     # there: unpack the runtime, then `run .gpucheck`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from edgenas.errors import EdgenasError, one_line  # noqa: E402

#: exit status when there is no GPU: everything before the first GPU call was done
NO_GPU = 3
TINY_SPACE = REPO / "tests" / "data" / "tiny_space.json"
SAMPLES = {"main": 8, "mbv2-224": 4}  # random inputs each model is compared on
PRECISIONS = ("fp32", "fp16", "int8")
SLICE_NETWORKS = 6
PEERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "torch_cuda")
MANIFEST = "manifest.json"
SCHEMA, VERSION = "edgenas.gpu-check", 1
DEFAULT_ARCH = "sm_90"  # this workplace's GPU machines (H100, H200)


class Stop(Exception):
    """No GPU here: the check stops before its first GPU call."""


def gpu_target(work: Path, arch: str | None) -> Path:
    """The shipped nvidia-gpu target, at `arch` when given (else the GPU's own, which needs nvidia-smi)."""
    text = (REPO / "targets" / "nvidia-gpu.toml").read_text()
    if arch:
        text = text.replace('mcpu = "native", mtriple = "nvptx64', f'mcpu = "{arch}", mtriple = "nvptx64')
    path = work / "nvidia-gpu.toml"
    path.write_text(text)
    return path


# ---- prepare: here, with TVM's compiler ----------------------------------------------------------------------------
def models(build: Path | None, work: Path, only: list[str] | None = None) -> dict:
    """name -> (fp32 ONNX, int8 ONNX, input shape, what it is, how `run` builds its PyTorch peer or None), for the
    names in `only` (None: all)."""
    from edgenas.bundle import load_bundle
    from edgenas.compile.qdq import Reader, pre_process, quantize_qdq
    from edgenas.measure.onnx_export import to_onnx
    from edgenas.space import get_space
    from edgenas.space.blocks import Network, randomize_bn

    def int8_of(fp32: bytes, shape: tuple, sub: str) -> bytes:
        import onnx

        d = work / sub
        d.mkdir(exist_ok=True)
        cal = np.random.default_rng(0).standard_normal((16, *shape[1:])).astype(np.float32)
        name = onnx.load_from_string(fp32).graph.input[0].name
        return quantize_qdq(pre_process(d, fp32), d / "int8.onnx", Reader(name, cal), "minmax", True, [])

    found = {}
    if build is not None:
        fp32, info = load_bundle(build / "tuned" if (build / "tuned").exists() else build / "fp32")
        int8, _ = load_bundle(build / "int8")
        found["main"] = (fp32, int8, tuple(info.input_shape), f"the network the build in {build} shipped", None)
    else:
        space = get_space("digits")
        arch = space.largest()
        shape = (1, space.in_channels, arch.resolution, arch.resolution)
        fp32 = to_onnx(randomize_bn(Network(space, arch)), shape)
        found["main"] = (fp32, int8_of(fp32, shape, "main"), shape,
                         f"the default space's largest network ({arch.encoding}), random weights",
                         {"space": "digits", "arch": arch.to_dict()})
    if only is None or "mbv2-224" in only:
        from mobilenetv2 import MobileNetV2

        shape = (1, 3, 224, 224)
        fp32 = to_onnx(MobileNetV2().eval(), shape)
        found["mbv2-224"] = (fp32, int8_of(fp32, shape, "mbv2"), shape, "MobileNetV2 1.0, 224x224, random weights",
                             {"mobilenetv2": True})
    return {name: v for name, v in found.items() if only is None or name in only}


def reference(onnx_model: bytes, xs: np.ndarray) -> np.ndarray:
    from edgenas.measure.ort import make_session

    sess = make_session(onnx_model, None, threads=os.cpu_count() or 1)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[None]})[0] for x in xs])


def prepare_models(out: Path, target, build: Path | None, onnx_files: bool, only: list[str] | None,
                   deadline: float) -> dict:
    from edgenas.compile.build import compile_onnx_model
    from edgenas.compile.cuda import device_code
    from edgenas.measure.onnx_export import to_float16
    from edgenas.measure.tvm import export_library

    found = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-gpu-check-") as tmp:
        for name, (fp32, int8, shape, what, torch_peer) in models(build, Path(tmp), only).items():
            xs = np.random.default_rng(1).standard_normal((SAMPLES[name], *shape[1:])).astype(np.float32)
            np.save(out / f"inputs-{name}.npy", xs)
            row = found[name] = {"what": what, "input": list(shape), "inputs": f"inputs-{name}.npy", "torch": torch_peer,
                                 "precisions": {}}
            for precision, model in (("fp32", fp32), ("fp16", to_float16(fp32)), ("int8", int8)):
                c = compile_onnx_model(model, f"{name} {precision}", target)
                stem = f"{name}-{precision}"
                export_library(c.executable, out / f"{stem}.so", target)
                np.save(out / f"ref-{stem}.npy", reference(model, xs))
                if onnx_files:
                    (out / f"{stem}.onnx").write_bytes(model)
                row["precisions"][precision] = {
                    "library": f"{stem}.so", "reference": f"ref-{stem}.npy", "input_dtype": c.input.dtype,
                    "onnx": f"{stem}.onnx" if onnx_files else None, "compile_seconds": c.seconds,
                    "device_code": device_code(c.executable), "ops": c.ops}
                if time.monotonic() > deadline:
                    raise TimeoutError(f"out of time after compiling {stem}")
    return found


def prepare_table_slice(out: Path, target_file: Path) -> dict:
    """The tiny space's blocks (its whole fp32 table) and a few of its networks, each compiled as `profile` and
    `validate` compile them (`measure.batch`), into one library each."""
    from edgenas.compile.build import CompileConfig, compile_onnx_graphs, graph_function
    from edgenas.measure.batch import GraphJob
    from edgenas.measure.tvm import export_library
    from edgenas.space import get_space
    from edgenas.tables.key import TableKey
    from edgenas.tables.validate import sample_archs
    from edgenas.targets import load_target_file

    space = get_space(str(TINY_SPACE))
    key = TableKey(load_target_file(target_file), "tvm", "fp32", space, threads=1)
    blocks = [GraphJob(space, layer=layer, seed=i) for i, layer in enumerate(space.all_layers())]
    archs = sample_archs(space, SLICE_NETWORKS, seed=0)
    networks = [GraphJob(space, arch=a) for a in archs]
    found = {"space": space.name, "precision": key.precision, "schedules": key.schedules()}
    for part, jobs in (("blocks", blocks), ("networks", networks)):
        executable, inputs = compile_onnx_graphs([j.onnx(key.precision, key.target) for j in jobs], key.target,
                                                 CompileConfig(0, key.layout, key.tuning_db))
        export_library(executable, out / f"slice-{part}.so", key.target)
        found[part] = {"library": f"slice-{part}.so", "functions": [
            {"function": graph_function(i), "shape": list(j.shape), "dtype": inp.dtype,
             **({"key": j.layer.key} if j.layer is not None else
                {"arch": j.arch.encoding, "layers": [layer.key for layer in space.layers(j.arch)]})}
            for i, (j, inp) in enumerate(zip(jobs, inputs))]}
    return found


#: what TVM's Python package holds besides its runtime: the compiler library, its sources and headers
NOT_RUNTIME = {"libtvm_compiler.so", "3rdparty", "src", "include", "__pycache__"}


def pack_runtime(out: Path) -> dict:
    """TVM's Python package without its compiler, as DIR/tvm-runtime.tar.xz: with `TVM_USE_RUNTIME_LIB=1` it loads
    libtvm_runtime alone, and runs a library as a board does. (apache-tvm-ffi, which it needs, holds compiled code
    for one CPython: `gpu_check.sh prepare` fetches the GPU machine's wheel.)"""
    import tvm
    import tvm_ffi

    with tarfile.open(out / "tvm-runtime.tar.xz", "w:xz") as tar:
        tar.add(Path(tvm.__file__).parent, arcname="tvm", filter=lambda m: None if Path(m.name).name in NOT_RUNTIME else m)
    return {"tvm": tvm.__version__, "tvm_ffi": tvm_ffi.__version__, "archive": "tvm-runtime.tar.xz"}


def prepare(out: Path, arch: str | None, build: Path | None, onnx_files: bool, runtime: bool, only: list[str] | None,
            minutes: float, cpu: bool = False, table_slice: bool = True) -> dict:
    """`cpu`: the same check for this machine's CPU (`host`), so that the check's own code runs end to end, and is
    tested, where there is no GPU."""
    from edgenas.compile.tune import compile_target
    from edgenas.targets import gpu_here, load_target_file
    from edgenas.versions import versions

    deadline = time.monotonic() + minutes * 60
    out.mkdir(parents=True, exist_ok=True)
    if arch is None:
        arch = None if gpu_here() else DEFAULT_ARCH
    if cpu:
        target_file = out / "host.toml"
        shutil.copyfile(REPO / "targets" / "host.toml", target_file)
    else:
        target_file = gpu_target(out, arch)
    target = load_target_file(target_file)
    tgt = compile_target(target)
    manifest = {"schema": SCHEMA, "schema_version": VERSION, "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "target": str(tgt), "device": target.device, "arch": str(tgt.attrs["mcpu"]), "versions": versions()}
    manifest["models"] = prepare_models(out, target, build, onnx_files, only, deadline)
    manifest["table_slice"] = prepare_table_slice(out, target_file) if table_slice else None
    if runtime:
        manifest["runtime"] = pack_runtime(out)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


# ---- run: on the GPU machine, TVM's runtime alone ------------------------------------------------------------------
def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    scale = float(np.abs(ref).max()) or 1.0
    return {"max_abs_diff": float(np.abs(ours - ref).max()), "max_rel_to_output_range": float(np.abs(ours - ref).max() / scale),
            "top1_agreement": float((ours.argmax(1) == ref.argmax(1)).mean())}


def _ms(m) -> dict:
    return {"median_ms": round(m.median_ms, 5), "min_ms": round(m.min_ms, 5)}


def ort_gpu_ms(onnx_model: bytes, x: np.ndarray, provider: str, cfg) -> dict:
    """ONNX Runtime on the GPU with `provider`, input and output bound on the device (no copies timed)."""
    import onnxruntime as ort

    from edgenas.measure.timing import time_python_call

    if provider not in ort.get_available_providers():
        return {"skipped": f"this onnxruntime has no {provider} (has {', '.join(ort.get_available_providers())})"}
    sess = ort.InferenceSession(onnx_model, ort.SessionOptions(), providers=[provider])
    if sess.get_providers()[0] != provider:
        return {"skipped": f"{provider} did not take the model (ran on {sess.get_providers()[0]})"}
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output(sess.get_outputs()[0].name, "cuda")
    return _ms(time_python_call(lambda: sess.run_with_iobinding(binding), cfg))


def torch_module(spec: dict):
    """The model's architecture in PyTorch, random weights: a peer's speed does not depend on its weights."""
    if spec.get("mobilenetv2"):
        from mobilenetv2 import MobileNetV2

        return MobileNetV2()
    from edgenas.space import Arch, get_space
    from edgenas.space.blocks import Network

    return Network(get_space(spec["space"]), Arch.from_dict(spec["arch"]))


def torch_cuda_ms(spec: dict | None, shape: list, precision: str, cfg) -> dict:
    """PyTorch's eager mode on the GPU (cuDNN), the same network at fp32 or fp16, one stream, batch 1: each sample the
    mean of back-to-back calls between two CUDA events."""
    if spec is None:
        return {"skipped": "no PyTorch module for a build's bundle"}
    if precision == "int8":
        return {"skipped": "PyTorch has no int8 convolution on CUDA in eager mode"}
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"skipped": "torch sees no GPU"}
    from edgenas.measure.timing import Measurement

    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = torch_module(spec).eval().to("cuda", dtype)
    x = torch.randn(*shape, device="cuda", dtype=dtype)
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(x)
        end.record()
        end.synchronize()
        number = max(1, int(cfg.min_repeat_ms / max(start.elapsed_time(end), 1e-3)))
        samples = []
        for _ in range(cfg.repeat):
            start.record()
            for _ in range(number):
                model(x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / number)
    return {**_ms(Measurement.from_samples(samples)), "torch": torch.__version__}


def device(manifest: dict):
    import tvm

    return tvm.cuda(0) if manifest["device"] == "cuda" else tvm.cpu(0)


def run_models(d: Path, manifest: dict, report: dict, deadline: float) -> None:
    import tvm
    from tvm.runtime.vm import VirtualMachine

    from edgenas.measure.timing import MeasureConfig
    from edgenas.measure.tvm import time_main

    cfg = MeasureConfig(repeat=30, min_repeat_ms=10, cooldown_ms=0)
    dev = device(manifest)
    for name, m in manifest["models"].items():
        xs = np.load(d / m["inputs"])
        row = report["models"].setdefault(name, {"what": m["what"], "input": m["input"]})
        for precision, p in m["precisions"].items():
            r = row[precision] = {"device_code": p["device_code"]}
            lib = tvm.runtime.load_module(str(d / p["library"]))
            vm = VirtualMachine(lib, dev)
            ours = np.concatenate([vm["main"](tvm.runtime.tensor(x[None], dev)).numpy() for x in xs])
            r["against_onnxruntime_cpu"] = compare(ours, np.load(d / p["reference"]))
            r["tvm"] = _ms(time_main(lib, dev, tuple(m["input"]), cfg, p["input_dtype"]))
            r["torch_cuda"] = torch_cuda_ms(m["torch"], m["input"], precision, cfg)
            for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
                r[provider] = (ort_gpu_ms((d / p["onnx"]).read_bytes(), xs[:1], provider, cfg) if p["onnx"] else
                               {"skipped": "prepared with --no-onnx"})
            # TVM's median over each peer's, same network and precision: below 1, TVM is faster
            r["tvm_over"] = {peer: round(r["tvm"]["median_ms"] / r[peer]["median_ms"], 3) for peer in PEERS
                             if "median_ms" in r[peer]}
            if time.monotonic() > deadline:
                raise TimeoutError(f"out of time after {name} {precision}")


def run_table_slice(d: Path, manifest: dict, report: dict) -> None:
    """Every block timed as `profile` times a library of them (`time_functions`, taking turns), each network
    whole; a network's table prediction is the sum of its blocks (`LatencyModel.raw_ms`)."""
    import tvm

    from edgenas.measure.timing import MeasureConfig
    from edgenas.measure.tvm import time_functions

    cfg, dev = MeasureConfig.for_backend("tvm", repeat=10), device(manifest)
    s = manifest["table_slice"]
    timed = {}
    for part in ("blocks", "networks"):
        lib = tvm.runtime.load_module(str(d / s[part]["library"]))
        fns = s[part]["functions"]
        timed[part] = time_functions(lib, dev, [(f["function"], tuple(f["shape"]), f["dtype"]) for f in fns], cfg)
    table = {f["key"]: m.median_ms for f, m in zip(s["blocks"]["functions"], timed["blocks"])}
    rows = []
    for f, m in zip(s["networks"]["functions"], timed["networks"]):
        predicted = sum(table[k] for k in f["layers"])
        rows.append({"arch": f["arch"], "measured_ms": round(m.median_ms, 5), "predicted_ms": round(predicted, 5),
                     "error_pct": round((predicted - m.median_ms) / m.median_ms * 100, 2)})
    errors = [abs(r["error_pct"]) for r in rows]
    report["table_slice"] = {"space": s["space"], "precision": s["precision"], "blocks": len(table),
                             "entries_ms": {k: round(v, 5) for k, v in table.items()}, "networks": rows,
                             "mean_abs_error_pct": round(sum(errors) / len(errors), 2), "max_abs_error_pct": max(errors)}


def cuda_runtime() -> str | None:
    """TVM's CUDA runtime (libtvm_runtime_cuda) loaded, as `import tvm` loads it through its CUDA backend's Python
    hooks; with TVM's runtime alone (`TVM_USE_RUNTIME_LIB=1`) those hooks need the compiler and are skipped. Returns
    why it cannot load (it links the driver's libcuda.so.1), or None."""
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    if "tvm_runtime_cuda" in _LOADED_LIBS:
        return None
    try:
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
            package="tvm", target_name="tvm_runtime_cuda", mode="RTLD_LOCAL",
            extra_lib_paths=[Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent])
    except (OSError, RuntimeError) as e:
        return one_line(e)
    return None


def gpu_name() -> dict | None:
    import tvm

    dev = tvm.cuda(0)
    return {"name": dev.device_name, "compute_version": dev.compute_version} if dev.exist else None


def run(d: Path, report: dict, minutes: float) -> None:
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except ValueError as e:
        raise EdgenasError(f"{d / MANIFEST}: not JSON ({e}): prepare it again") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA or manifest.get("schema_version") != VERSION:
        raise EdgenasError(f"{d / MANIFEST}: not a {SCHEMA} version {VERSION} manifest")
    missing = [f for m in manifest["models"].values() for p in m["precisions"].values() for f in (p["library"], p["reference"])
               if not (d / f).exists()]
    if missing:
        raise EdgenasError(f"{d}: missing {', '.join(missing[:3])}: prepare it again")
    import tvm
    from tvm.base import _RUNTIME_ONLY

    report.update(target=manifest["target"], arch=manifest["arch"], prepared_with=manifest["versions"],
                  tvm={"version": tvm.__version__, "runtime_only": _RUNTIME_ONLY, "from": str(Path(tvm.__file__).parent)})
    libs = sum(len(m["precisions"]) for m in manifest["models"].values())
    if manifest["device"] == "cpu":  # prepared with --cpu
        report["gpu"] = None
    elif why := cuda_runtime():
        raise Stop(f"read the manifest of {libs} libraries for {manifest['arch']} in {d}, but TVM's CUDA runtime did not "
                   f"load ({why})")
    elif (gpu := gpu_name()) is None:
        raise Stop(f"read the manifest of {libs} libraries for {manifest['arch']} in {d}; TVM sees no GPU")
    else:
        report["gpu"] = gpu
    run_models(d, manifest, report, time.monotonic() + minutes * 60)
    if manifest["table_slice"]:
        run_table_slice(d, manifest, report)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("verb", nargs="?", choices=("all", "prepare", "run"), default="all")
    ap.add_argument("dir", nargs="?", type=Path, help="prepare, run: the folder of the prepared check")
    ap.add_argument("--arch", help=f"the GPU architecture to compile for (sm_86, sm_90); default: this machine's GPU, "
                                   f"else {DEFAULT_ARCH}")
    ap.add_argument("--build", type=Path, help="a build's run directory: check the network it shipped")
    ap.add_argument("--report", type=Path, default=Path("gpu-check.json"))
    ap.add_argument("--minutes", type=float, default=7.0, help="stop starting new steps after this long")
    ap.add_argument("--no-onnx", action="store_true", help="prepare: leave the ONNX files out (ONNX Runtime's GPU "
                                                           "providers are then not timed); they are half the size")
    ap.add_argument("--runtime", action="store_true", help="prepare: add TVM's runtime without its compiler")
    ap.add_argument("--models", nargs="+", choices=("main", "mbv2-224"), help="prepare: only these models")
    ap.add_argument("--no-slice", action="store_true", help="prepare: leave the table slice out")
    ap.add_argument("--cpu", action="store_true", help="prepare: for this machine's CPU (host) instead: the check's "
                                                       "own code end to end without a GPU")
    args = ap.parse_args()
    if args.verb != "all" and args.dir is None:
        ap.error(f"{args.verb} needs the folder of the prepared check")
    report: dict = {"check": "nvidia-gpu", "verb": args.verb, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "models": {}, "table_slice": {}, "gpu": None}
    code = 0
    tmp = tempfile.mkdtemp(prefix="edgenas-gpu-check-") if args.verb == "all" else None
    try:
        if args.verb in ("all", "prepare"):
            manifest = prepare(args.dir or Path(tmp), args.arch, args.build, not args.no_onnx, args.runtime,
                               args.models, args.minutes, args.cpu, not args.no_slice)
            report.update(arch=manifest["arch"], target=manifest["target"], prepared=str(args.dir or tmp))
            report["models"] = {n: {"what": m["what"], "input": m["input"],
                                    **{p: {"device_code": v["device_code"], "compile_seconds": v["compile_seconds"],
                                           "ops": v["ops"]} for p, v in m["precisions"].items()}}
                                for n, m in manifest["models"].items()}
        if args.verb in ("all", "run"):
            run(args.dir or Path(tmp), report, args.minutes)
    except Stop as e:
        report["stopped"] = (f"no NVIDIA GPU here: {e}; stopped before the first GPU call. It would run each library on "
                             f"the GPU against ONNX Runtime's CPU outputs, time it against ONNX Runtime's CUDA and "
                             f"TensorRT providers and PyTorch's CUDA, then time a slice of a GPU table and compare each "
                             f"network with the sum of its blocks")
        print(f"gpu_check: {report['stopped']}", file=sys.stderr)
        code = NO_GPU
    except (EdgenasError, TimeoutError, OSError, subprocess.CalledProcessError) as e:
        report["stopped"] = one_line(e)
        print(f"gpu_check: {report['stopped']}", file=sys.stderr)
        code = 1
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.report.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
