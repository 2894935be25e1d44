"""NVIDIA GPU targets with no GPU here: the kernels are PTX for the board's architecture, which its CUDA driver loads by
itself, with host code for the board's CPU; and nothing that would time the GPU silently times the CPU instead.

`CUDA_VISIBLE_DEVICES=""` hides any GPU the machine has, so these hold on a machine with one too."""

import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from conftest import FAST, TINY_SPACE, assert_one_line_error, run_cli
from edgenas.errors import BadInput
from edgenas.targets import get_target, load_target_file

NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
#: the newest PTX ISA each board's CUDA reads: JetPack 4 (CUDA 10.2) on the Nano, JetPack 5 (CUDA 11.4) on Orin
BOARDS = {"jetson-nano": ("sm_53", (6, 5)), "jetson-orin-nano": ("sm_87", (7, 4))}
EM_X86_64, EM_AARCH64 = 0x3E, 0xB7


def _machine(elf: bytes) -> int:
    assert elf[:4] == b"\x7fELF"
    return int.from_bytes(elf[18:20], "little")


def gpu_target(tmp_path, arch: str = "sm_86"):
    """The shipped nvidia-gpu target for a GPU of `arch`: how a user names one that is not in this machine."""
    text = Path(get_target("nvidia-gpu").source).read_text()
    path = tmp_path / f"gpu-{arch}.toml"
    path.write_text(text.replace('mcpu = "native", mtriple = "nvptx64', f'mcpu = "{arch}", mtriple = "nvptx64'))
    return path


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_a_jetson_library_holds_ptx_for_its_gpu_and_host_code_for_its_cpu(shipped, board, tmp_path):
    """Compiled and exported as objects (linking the .so needs the aarch64 cross compiler: test_arm64.py)."""
    from edgenas.bundle import load_bundle
    from edgenas.compile.build import compile_onnx_model
    from edgenas.compile.cuda import device_code, export_options

    sm, newest_ptx = BOARDS[board]
    data, _ = load_bundle(shipped[0] / "int8")
    compiled = compile_onnx_model(data, "int8", get_target(board))
    code = device_code(compiled.executable)
    assert code["format"].startswith("PTX") and code["arch"] == [sm] and code["kernels"] >= 1
    # libdevice linked in: no math function is left for the driver to find
    assert code["unresolved"] == []
    # int8 convolutions multiply through dp4a where the GPU has it (sm_61 and later), not on the Nano
    assert (code["dp4a"] > 0) == (sm != "sm_53"), code
    assert tuple(int(v) for v in code["ptx_version"].split(".")) <= newest_ptx, code
    compiled.executable.export_library(str(tmp_path / "lib.tar"), **export_options(get_target(board)))
    with tarfile.open(tmp_path / "lib.tar") as tar:
        files = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    objects = [b for b in files.values() if b[:4] == b"\x7fELF"]
    assert objects and all(_machine(b) == EM_AARCH64 for b in objects)
    # the packed modules as the board reads them: PTX whose kernels are entries the driver can launch, no CUDA C
    packed = bytes(int(h, 16) for h in re.findall(rb"0x([0-9a-f]{2})", files["devc.c"]))
    assert b".target " + sm.encode() in packed and b"__global__" not in packed
    assert packed.count(b"\n.visible .entry ") == code["kernels"]
    assert int.from_bytes(packed[:8], "little") == len(packed) - 8


@pytest.fixture(scope="module")
def gpu_artifact(shipped, tmp_path_factory):
    """The shipped int8 network compiled for an sm_86 GPU with no GPU reachable: (target file, artifact, its JSON,
    what compile said on stderr)."""
    tmp = tmp_path_factory.mktemp("gpu")
    target, out = gpu_target(tmp, "sm_86"), tmp / "art"
    proc = run_cli("compile", shipped[0] / "int8", "--target", target, "--out", out, "--json", check=0, env=NO_GPU)
    return target, out, json.loads(proc.stdout), proc.stderr


def test_an_nvidia_gpu_artifact_holds_ptx_for_the_gpu_it_names_and_an_x86_64_library(gpu_artifact):
    _, out, r, said = gpu_artifact
    assert "max_shared_memory_per_block" not in said  # dlight's warning, once per kernel, for TVM's nvptx kind
    code = r["compile"]["device_code"]
    assert code["format"].startswith("PTX") and code["arch"] == ["sm_86"] and code["unresolved"] == []
    assert code["kernels"] >= 1 and code["device_functions"] == 0 and code["dp4a"] > 0
    library = (out / "model.so").read_bytes()
    assert _machine(library[:20]) == EM_X86_64 and library.count(b"\n.visible .entry ") == code["kernels"]
    assert r["latency"]["measured"] is None and r["latency"]["not_measured"]
    readme = (out / "README.md").read_text()
    assert "tvm.cuda(0)" in readme and "tvm.support.nvcc" not in readme


def test_nothing_times_the_cpu_for_a_gpu_target_when_no_gpu_is_reachable(gpu_artifact, tmp_path):
    target, art, *_ = gpu_artifact
    common = ("--target", target, "--space", TINY_SPACE, "--tables", tmp_path / "tables", *FAST)
    assert_one_line_error(run_cli("profile", *common, "--backend", "tvm", env=NO_GPU), "needs an NVIDIA GPU",
                          "--rpc-tracker")
    assert_one_line_error(run_cli("profile", *common, "--backend", "ort", env=NO_GPU), "CUDAExecutionProvider")
    assert_one_line_error(run_cli("profile", *common, "--backend", "openvino", env=NO_GPU), "OpenVINO measures only")
    assert not list((tmp_path / "tables").rglob("*.json")), "a table was written"
    assert_one_line_error(run_cli("bench", art, "--repeat", 3, env=NO_GPU), "needs an NVIDIA GPU")


def test_native_names_this_machine_s_gpu_or_says_how_to_name_one(tmp_path, monkeypatch):
    from edgenas.targets import gpu_arch

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    target = load_target_file(get_target("nvidia-gpu").source)
    with pytest.raises(BadInput, match="nvidia-gpu.toml: field 'tvm.target.mcpu' is 'native'.*sm_86"):
        gpu_arch(target)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 8.9\n")
    smi.chmod(0o755)
    assert gpu_arch(target) == "sm_89"


def _gpu_check(verb: str, *args, env=None, timeout=900):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "tools/gpu_check.py", verb, *map(str, args)], capture_output=True, text=True,
                          env=env or NO_GPU, cwd=Path(__file__).resolve().parent.parent, timeout=timeout)


def _runtime_alone(prepared: Path, site: Path) -> dict:
    """The environment of a machine with TVM's runtime and not its compiler: the prepared package, unpacked."""
    with tarfile.open(prepared / "tvm-runtime.tar.xz") as tar:
        tar.extractall(site, filter="data")
    assert (site / "tvm" / "lib" / "libtvm_runtime.so").exists() and not list(site.rglob("libtvm_compiler.so"))
    return {**NO_GPU, "TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": f"{site}:{Path(__file__).resolve().parent.parent}"}


def test_the_device_check_prepares_what_a_gpu_machine_runs_with_tvm_s_runtime_alone(tmp_path):
    """`prepare` here, then `run` with TVM's runtime and no compiler, as on a GPU machine that cannot install the
    compiler: it reads what was prepared, and stops with one line before its first GPU call (exit 3)."""
    prepared = tmp_path / "check"
    proc = _gpu_check("prepare", prepared, "--arch", "sm_87", "--models", "main", "--runtime", "--no-slice",
                      "--report", tmp_path / "prepare.json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["arch"] == "sm_87" and manifest["device"] == "cuda" and set(manifest["models"]) == {"main"}
    main = manifest["models"]["main"]["precisions"]
    assert set(main) == {"fp32", "fp16", "int8"}
    for precision, p in main.items():
        code = p["device_code"]
        assert code["format"].startswith("PTX") and code["arch"] == ["sm_87"] and code["unresolved"] == []
        assert (code["dp4a"] > 0) == (precision == "int8"), (precision, code)
        assert _machine((prepared / p["library"]).read_bytes()[:20]) == EM_X86_64
        assert (prepared / p["reference"]).exists() and (prepared / p["onnx"]).exists()

    report = tmp_path / "run.json"
    proc = _gpu_check("run", prepared, "--report", report, env=_runtime_alone(prepared, tmp_path / "site"))
    assert proc.returncode == 3, proc.stderr
    r = json.loads(report.read_text())
    assert r["tvm"]["runtime_only"] and r["tvm"]["from"] == str(tmp_path / "site" / "tvm"), r["tvm"]
    assert r["gpu"] is None and "before the first GPU call" in r["stopped"] and "3 libraries for sm_87" in r["stopped"]
    assert [line for line in proc.stderr.splitlines() if line.startswith("gpu_check:")] == [f"gpu_check: {r['stopped']}"]


def test_the_device_check_runs_end_to_end_on_this_cpu_with_tvm_s_runtime_alone(tmp_path):
    """What `run` does on a GPU, done on this CPU (`prepare --cpu`): each library against ONNX Runtime's outputs, timed,
    its peers skipped with a reason, and the table slice's networks against the sums of their blocks."""
    from edgenas.space import get_space

    prepared = tmp_path / "check"
    proc = _gpu_check("prepare", prepared, "--cpu", "--models", "main", "--runtime", "--report", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr
    proc = _gpu_check("run", prepared, "--report", tmp_path / "r.json", env=_runtime_alone(prepared, tmp_path / "site"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["tvm"]["runtime_only"] and r["gpu"] is None and "stopped" not in r
    bound = {"fp32": 1e-5, "fp16": 1e-2, "int8": 0.05}  # of the output's range, against the same ONNX file
    for precision, most in bound.items():
        row = r["models"]["main"][precision]
        assert row["against_onnxruntime_cpu"]["max_rel_to_output_range"] < most, (precision, row)
        assert 0 < row["tvm"]["min_ms"] <= row["tvm"]["median_ms"]
        assert "skipped" in row["torch_cuda"] and "skipped" in row["CUDAExecutionProvider"] and row["tvm_over"] == {}
    table = r["table_slice"]
    assert set(table["entries_ms"]) == {layer.key for layer in get_space(str(TINY_SPACE)).all_layers()}
    assert len(table["networks"]) == 6
    for n in table["networks"]:
        assert n["measured_ms"] > 0 and n["predicted_ms"] > 0
        # of the unrounded figures
        assert n["error_pct"] == pytest.approx((n["predicted_ms"] - n["measured_ms"]) / n["measured_ms"] * 100, abs=0.5)


def _digits_network():
    """The default space's largest network with random weights, as ONNX, and its input shape."""
    from edgenas.measure.onnx_export import to_onnx
    from edgenas.space import get_space
    from edgenas.space.blocks import Network, randomize_bn

    space = get_space("digits")
    arch = space.largest()
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    return to_onnx(randomize_bn(Network(space, arch)), shape), shape


def test_fp16_is_one_onnx_file_that_tvm_sums_in_float32_and_that_computes_what_fp32_does():
    """TVM's float16 kernels run on this CPU as they would on a GPU (the same Relax and TIR, LLVM's float16 on x86):
    the conversion, the float32 sums and the float16 multiply-adds checked against ONNX Runtime's fp32."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from edgenas.compile.build import compile_onnx_model
    from edgenas.measure.onnx_export import to_float16

    fp32, shape = _digits_network()
    fp16 = to_float16(fp32)
    graph = onnx.load_from_string(fp16).graph
    onnx.checker.check_model(onnx.load_from_string(fp16))  # topologically sorted
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer if i.dims)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # a network keeps float32 I/O
    block = onnx.load_from_string(to_float16(fp32, block=True)).graph
    assert block.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16  # a block runs inside one

    compiled = compile_onnx_model(fp16, "fp16", get_target("host"))
    assert set(compiled.ops) == {"relax.nn.conv2d:float32", "relax.matmul:float32"}, compiled.ops
    vm = relax.VirtualMachine(compiled.executable.jit(), tvm.cpu())
    ref = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        ours = vm["main"](tvm.runtime.tensor(x)).numpy()
        want = ref.run(None, {ref.get_inputs()[0].name: x})[0]
        assert ours.dtype == np.float32 and ours.argmax() == want.argmax()
        assert np.abs(ours - want).max() < 1e-2 * np.abs(want).max(), (np.abs(ours - want).max(), np.abs(want).max())


def test_fp16_compiles_to_ptx_for_a_gpu_and_is_refused_for_a_cpu_target(tmp_path):
    from edgenas.compile.build import compile_onnx_model
    from edgenas.compile.cuda import device_code
    from edgenas.measure.onnx_export import to_float16

    fp32, _ = _digits_network()
    code = device_code(compile_onnx_model(to_float16(fp32), "fp16", load_target_file(gpu_target(tmp_path))).executable)
    assert code["arch"] == ["sm_86"] and code["unresolved"] == [] and code["kernels"] >= 1
    common = ("--space", TINY_SPACE, "--tables", tmp_path / "tables", "--precision", "fp16", *FAST)
    assert_one_line_error(run_cli("profile", "--target", "host", *common), "--precision fp16 is for NVIDIA GPU targets",
                          "'host'")
    assert_one_line_error(run_cli("profile", "--target", gpu_target(tmp_path), "--backend", "tvm", *common, env=NO_GPU),
                          "needs an NVIDIA GPU")
    assert not list((tmp_path / "tables").rglob("*.json")), "a table was written"
    assert_one_line_error(run_cli("build", "--target", gpu_target(tmp_path), "--precision", "fp16", "--out",
                                  tmp_path / "run", env=NO_GPU), "'fp16' is not one of 'int8', 'fp32', 'auto'")


def test_the_gpu_peers_benchmark_says_in_one_line_that_there_is_no_gpu():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "tools/bench_peers.py", "--gpu"], capture_output=True, text=True, env=NO_GPU,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == ["bench_peers: error: --gpu: TVM sees no NVIDIA GPU here (on a GPU machine "
                                                "without the compiler, tools/gpu_check.sh prepare and run time the same)"]
