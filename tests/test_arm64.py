"""aarch64 artifacts: one runs under qemu-user, in an arm64 Debian root with the aarch64 TVM wheel; a Jetson one builds.

The root is built once by tools/arm64-root.sh (about 3 minutes; kept in .cache/arm64-root). Deselect with
`-m "not arm64"`; run alone with `.venv/bin/python -m pytest -m arm64`.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edgenas.accuracy import bundle_split, model_inputs
from edgenas.bundle import load_bundle

pytestmark = pytest.mark.arm64
REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / ".cache" / "arm64-root"

RUNNER = """
import sys, numpy as np, tvm
from tvm import relax
lib = tvm.runtime.load_module("/work/model.so")
vm = relax.VirtualMachine(lib, tvm.cpu(0))
x = np.load("/work/x.npy")
np.save("/work/out.npy", np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy() for i in range(len(x))]))
print(tvm.__version__, tvm.target.codegen.llvm_get_system_cpu() if hasattr(tvm.target, "codegen") else "")
"""


@pytest.fixture(scope="module")
def cross_compiler():
    subprocess.run(["bash", str(REPO / "tools" / "install-cross.sh")], check=True, timeout=1800)


@pytest.fixture(scope="module")
def arm64_root(cross_compiler):
    subprocess.run(["bash", str(REPO / "tools" / "arm64-root.sh"), str(ROOT)], check=True, timeout=1800)
    return ROOT


def _is_aarch64_library(path: Path) -> bool:
    head = path.read_bytes()[:20]
    return head[:4] == b"\x7fELF" and head[18] == 0xB7  # e_machine EM_AARCH64


def test_jetson_artifact_holds_ptx_kernels_and_an_aarch64_host_library(shipped, cross_compiler, tmp_path):
    """Build only: no GPU here. The kernels are PTX that the board's CUDA driver compiles when it loads the library
    (tests/test_gpu.py checks the PTX itself without the cross compiler)."""
    r = json.loads(run_cli("compile", shipped[0] / "int8", "--target", "jetson-orin-nano", "--out", tmp_path / "jet", "--json",
                           check=0).stdout)
    assert r["target"]["device"] == "cuda" and r["latency"]["measured"] is None and "rpc-tracker" in r["latency"]["not_measured"]
    so = tmp_path / "jet" / "model.so"
    assert _is_aarch64_library(so)
    code = r["compile"]["device_code"]
    assert code["format"].startswith("PTX") and code["arch"] == ["sm_87"] and code["kernels"] >= 1
    assert so.read_bytes().count(b"\n.visible .entry ") == code["kernels"] and b"__global__" not in so.read_bytes()
    assert "tvm.support.nvcc" not in (tmp_path / "jet" / "README.md").read_text()


@pytest.fixture(scope="module")
def aarch64_artifact(shipped, cross_compiler, tmp_path_factory):
    """The shipped int8 network compiled for a Raspberry Pi 4 (no board here: built, not measured)."""
    out = tmp_path_factory.mktemp("arm") / "arm"
    r = json.loads(run_cli("compile", shipped[0] / "int8", "--target", "rasp4b64", "--out", out, "--json", check=0).stdout)
    assert r["target"]["arch"] == "aarch64" and r["latency"]["measured"] is None and r["latency"]["not_measured"]
    so = out / "model.so"
    assert _is_aarch64_library(so) and r["compile"]["device_code"] is None
    return r, so


#: NEON integer multiplies and multiply-accumulates on vector registers (`fmla` and other float ones do not match)
NEON_INTEGER_MAC = re.compile(r"\s(?:mla|mul|smlal2?|umlal2?|smull2?|umull2?|sdot|udot)\s+v\d+\.(?:4s|8h|2d)\b")


def _kernels(disassembly: str) -> dict[str, str]:
    """objdump -d's text, cut into the code of each kernel: its packed-call wrapper `__tvm_ffi_<name>` and its
    body `<name>_compute_`, where LLVM put the loops."""
    parts = re.split(r"^[0-9a-f]+ <([^>]+)>:$", disassembly, flags=re.M)
    kernels: dict[str, str] = {}
    for symbol, code in zip(parts[1::2], parts[2::2]):
        name = symbol.removeprefix("__tvm_ffi_").removesuffix("_compute_")
        kernels[name] = kernels.get(name, "") + code
    return kernels


def test_aarch64_integer_convolutions_run_neon_integer_instructions(aarch64_artifact):
    r, so = aarch64_artifact
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(so)], capture_output=True,
                         text=True, check=True).stdout
    # (the weight-repacking kernels stay in the library, uncalled: their work was folded into constants)
    kernels = {name: code for name, code in _kernels(dis).items() if "conv2d" in name and not name.endswith("_weight_prepack")}
    # every convolution of the int8 model computes in integers (layers of one shape share a kernel)
    assert 0 < len(kernels) <= r["compile"]["ops"]["relax.nn.conv2d:int32"] and "relax.nn.conv2d:float32" not in r["compile"]["ops"]
    scalar = [name for name, body in kernels.items() if not NEON_INTEGER_MAC.search(body)]
    assert not scalar, f"{len(scalar)} of {len(kernels)} convolution kernels multiply with no NEON integer instruction: {scalar[:3]}"
    # the check can fail: plain integer code is not mistaken for it
    assert not NEON_INTEGER_MAC.search("  4:\tmadd\tw0, w1, w2, w0\n  8:\tfmla\tv0.4s, v1.4s, v2.4s\n")


def test_aarch64_artifact_runs_under_qemu_like_the_x86_build(shipped, aarch64_artifact, arm64_root):
    root = shipped[0]
    r, so = aarch64_artifact
    _, info = load_bundle(root / "int8")
    x = model_inputs(info, bundle_split(info, "int8").val_x[:20])
    work = arm64_root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copy(so, work / "model.so")
    np.save(work / "x.npy", x)
    (work / "run.py").write_text(RUNNER)
    proc = subprocess.run(["chroot", str(arm64_root), "/opt/venv/bin/python", "/work/run.py"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    arm = np.load(work / "out.npy")
    # the x86 build of the same model, from the shipped host artifact
    from tvm import relax
    import tvm

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(root / "art" / "model.so")), tvm.cpu(0))
    x86 = np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1])).numpy() for i in range(len(x))])
    step = np.abs(np.diff(np.unique(x86))).min()  # the output is dequantized int8: a grid of one step
    assert np.abs(arm - x86).max() <= step * 1.001 and (arm.argmax(1) == x86.argmax(1)).all()
