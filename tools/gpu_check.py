#!/usr/bin/env python
"""The NVIDIA GPU device check (issue 34): what edgenas compiles for a GPU, run on one, within a time limit.

Steps, each recorded in one JSON report (--report):
1. compile for `nvidia-gpu` at this GPU's architecture (--arch names another, for a dry run): the main command's network
   (--build DIR: the fp32 and int8 bundles a build shipped; else the default space's largest network, random weights)
   and MobileNetV2 1.0 at 224x224 (random weights), fp32, fp16 (one float16 ONNX file) and int8 (QDQ, symmetric, as
   CUDA targets quantize; dp4a where the GPU has it), to PTX;
2. run each on the GPU and compare it with ONNX Runtime on the CPU running the same ONNX model (int8: the QDQ model,
   fp16: the float16 one);
3. time each with TVM's time_evaluator on the GPU (device-side), side by side with ONNX Runtime's CUDA provider and
   TensorRT's where this onnxruntime has them (batch 1, one stream, inputs and outputs bound on the GPU);
4. a slice of a GPU latency table: the tests' tiny space profiled with TVM on the GPU, validated on a few networks.

With no GPU it does everything up to the first GPU call (compiles and CPU references included), writes the report
with what it would do next, says so in one line and exits 3.

    bash tools/gpu_check.sh                       # set-up, then this with a time limit
    .venv/bin/python tools/gpu_check.py --arch sm_86 --report gpu-check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
SAMPLES = 8  # random inputs each model is compared on


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


def models(build: Path | None, work: Path) -> dict:
    """name -> (fp32 ONNX, int8 ONNX, input shape, what it is)."""
    from edgenas.bundle import load_bundle
    from edgenas.compile.qdq import Reader, pre_process, quantize_qdq
    from edgenas.measure.onnx_export import to_onnx
    from edgenas.space import get_space
    from edgenas.space.blocks import Network, randomize_bn

    def int8_of(fp32: bytes, shape: tuple, sub: str) -> bytes:
        d = work / sub
        d.mkdir(exist_ok=True)
        cal = np.random.default_rng(0).standard_normal((16, *shape[1:])).astype(np.float32)
        import onnx

        name = onnx.load_from_string(fp32).graph.input[0].name
        return quantize_qdq(pre_process(d, fp32), d / "int8.onnx", Reader(name, cal), "minmax", True, [])

    found = {}
    if build is not None:
        fp32, info = load_bundle(build / "tuned" if (build / "tuned").exists() else build / "fp32")
        int8, _ = load_bundle(build / "int8")
        found["main"] = (fp32, int8, tuple(info.input_shape), f"the network the build in {build} shipped")
    else:
        space = get_space("digits")
        arch = space.largest()
        shape = (1, space.in_channels, arch.resolution, arch.resolution)
        fp32 = to_onnx(randomize_bn(Network(space, arch)), shape)
        found["main"] = (fp32, int8_of(fp32, shape, "main"), shape,
                         f"the default space's largest network ({arch.encoding}), random weights")
    from mobilenetv2 import MobileNetV2

    shape = (1, 3, 224, 224)
    fp32 = to_onnx(MobileNetV2().eval(), shape)
    found["mbv2-224"] = (fp32, int8_of(fp32, shape, "mbv2"), shape, "MobileNetV2 1.0, 224x224, random weights")
    return found


def reference(onnx_model: bytes, xs: np.ndarray) -> np.ndarray:
    from edgenas.measure.ort import make_session

    sess = make_session(onnx_model, None, threads=os.cpu_count() or 1)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[None]})[0] for x in xs])


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    scale = float(np.abs(ref).max()) or 1.0
    return {"max_abs_diff": float(np.abs(ours - ref).max()), "max_rel_to_output_range": float(np.abs(ours - ref).max() / scale),
            "top1_agreement": float((ours.argmax(1) == ref.argmax(1)).mean())}


def ort_gpu_ms(onnx_model: bytes, x: np.ndarray, provider: str, cfg) -> dict:
    """ONNX Runtime on the GPU with `provider`, input and output bound on the device (no copies timed)."""
    import onnxruntime as ort

    from edgenas.measure.timing import time_python_call

    if provider not in ort.get_available_providers():
        return {"skipped": f"this onnxruntime has no {provider} (has {', '.join(ort.get_available_providers())})"}
    opts = ort.SessionOptions()
    sess = ort.InferenceSession(onnx_model, opts, providers=[provider])
    if sess.get_providers()[0] != provider:
        return {"skipped": f"{provider} did not take the model (ran on {sess.get_providers()[0]})"}
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output(sess.get_outputs()[0].name, "cuda")
    m = time_python_call(lambda: sess.run_with_iobinding(binding), cfg)
    return {"median_ms": round(m.median_ms, 5), "min_ms": round(m.min_ms, 5)}


def check_model(name: str, fp32: bytes, int8: bytes, shape: tuple, target, report: dict, deadline: float,
                work: Path) -> None:
    import tvm
    from tvm import relax

    from edgenas.compile.build import compile_onnx_model
    from edgenas.compile.cuda import device_code
    from edgenas.measure.timing import MeasureConfig
    from edgenas.measure.tvm import load_here, time_main

    xs = np.random.default_rng(1).standard_normal((SAMPLES, *shape[1:])).astype(np.float32)
    row = report["models"][name]
    from edgenas.measure.onnx_export import to_float16

    for precision, model in (("fp32", fp32), ("fp16", to_float16(fp32)), ("int8", int8)):
        r = row[precision] = {}
        c = compile_onnx_model(model, f"{name} {precision}", target)
        r["compile_seconds"], r["device_code"] = c.seconds, device_code(c.executable)
        r["ops"] = c.ops
        ref = reference(model, xs)
        if not tvm.cuda(0).exist:
            raise Stop(f"compiled {name} {precision} for {target.tvm} and ran ONNX Runtime's CPU reference")
        dev = tvm.cuda(0)
        lib = load_here(c.executable, target, work / f"{name}-{precision}.so")
        vm = relax.VirtualMachine(lib, dev)
        ours = np.concatenate([vm["main"](tvm.runtime.tensor(x[None], dev)).numpy() for x in xs])
        r["against_onnxruntime_cpu"] = compare(ours, ref)
        cfg = MeasureConfig(repeat=30, min_repeat_ms=10, cooldown_ms=0)
        m = time_main(lib, dev, shape, cfg, c.input.dtype)
        r["tvm_ms"] = {"median_ms": round(m.median_ms, 5), "min_ms": round(m.min_ms, 5)}
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            r[provider] = ort_gpu_ms(model, xs[:1], provider, cfg)
        if time.monotonic() > deadline:
            raise TimeoutError(f"out of time after {name} {precision}")


def table_slice(target_file: Path, work: Path, report: dict) -> None:
    """The tiny space's GPU table, profiled in full and validated on a few networks, with the CLI a user runs."""
    common = ["--target", str(target_file), "--space", str(TINY_SPACE), "--backend", "tvm", "--precision", "fp32",
              "--tables", str(work / "tables"), "--repeat", "10", "--json"]
    for verb, extra in (("profile", ["--full"]), ("validate", ["--samples", "6"])):
        proc = subprocess.run([sys.executable, "-m", "edgenas", verb, *common, *extra], capture_output=True, text=True,
                              timeout=300)
        report["table_slice"][verb] = (json.loads(proc.stdout) if proc.returncode == 0 else
                                       {"exit": proc.returncode, "error": proc.stderr.strip().splitlines()[-1:]})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", help="the GPU architecture to compile for (sm_86, sm_90); default: this machine's GPU")
    ap.add_argument("--build", type=Path, help="a build's run directory: check the network it shipped")
    ap.add_argument("--report", type=Path, default=Path("gpu-check.json"))
    ap.add_argument("--minutes", type=float, default=7.0, help="stop starting new steps after this long")
    args = ap.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    report: dict = {"check": "nvidia-gpu", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "models": {},
                    "table_slice": {}, "gpu": None}
    code = 0
    with tempfile.TemporaryDirectory(prefix="edgenas-gpu-check-") as tmp:
        work = Path(tmp)
        try:
            from edgenas.targets import gpu_here, load_target_file
            from edgenas.versions import versions

            report["versions"] = versions()
            if args.arch is None and not gpu_here():
                args.arch, report["arch"] = "sm_87", "sm_87 (Orin's: there is no GPU here to name its own)"
            target_file = gpu_target(work, args.arch)
            target = load_target_file(target_file)
            report["target"] = str(target.tvm)
            if gpu_here():
                import tvm

                report["gpu"] = {"name": tvm.cuda(0).device_name, "compute_version": tvm.cuda(0).compute_version}
            found = models(args.build, work)
            for name, (fp32, int8, shape, what) in found.items():
                report["models"][name] = {"what": what, "input": list(shape)}
                check_model(name, fp32, int8, shape, target, report, deadline, work)
            table_slice(target_file, work, report)
        except Stop as e:
            report["stopped"] = (f"no NVIDIA GPU here: {e}; stopped before the first GPU call. It would run each model "
                                 f"on the GPU against that reference, time it against ONNX Runtime's CUDA and TensorRT "
                                 f"providers, then profile and validate a slice of a GPU table")
            print(f"gpu_check: {report['stopped']}", file=sys.stderr)
            code = NO_GPU
        except (EdgenasError, TimeoutError) as e:
            report["stopped"] = one_line(e)
            print(f"gpu_check: {report['stopped']}", file=sys.stderr)
            code = 1
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.report.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
