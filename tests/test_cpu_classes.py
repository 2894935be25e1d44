"""What a user on another x86 CPU class sees, from whichever CPU runs the tests.

ONNX Runtime picks its kernels from CPUID at run time: `qemu-x86_64 -cpu Haswell` (Debian's qemu-user, installed by
`tools/setup.sh --test`) runs it as on an AVX2 CPU without AVX-512 or VNNI. TVM's code for that class is compiled for
LLVM's `haswell` and runs natively on any AVX2 host.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import assert_matches_the_exact_reference, cpu_target, output_step, run_cli
from edgenas.accuracy import bundle_split, model_inputs, ort_logits, vm_logits
from edgenas.bundle import load_bundle

AVX2_CPU = "Haswell"
#: run under qemu: the int8 bundle's validation logits, ONNX Runtime as it ships and the exact reference
LOGITS = """
import sys, numpy as np
from edgenas.accuracy import bundle_split, model_inputs, ort_logits
from edgenas.bundle import load_bundle
data, info = load_bundle(sys.argv[1])
x = model_inputs(info, bundle_split(info, "m").val_x[:int(sys.argv[2])])
np.savez(sys.argv[3], shipped=ort_logits(data, x), exact=ort_logits(data, x, exact=True))
"""


def under_qemu(cpu: str, *args, timeout=600) -> subprocess.CompletedProcess:
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 is missing: run `bash tools/install-qemu.sh` (tools/setup.sh --test does)"
    proc = subprocess.run([qemu, "-cpu", cpu, sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_exact_reference_is_the_same_on_avx2_and_tvm_matches_it_there(shipped, tmp_path):
    root = shipped[0]
    data, info = load_bundle(root / "int8")
    n = 200
    under_qemu(AVX2_CPU, "-c", LOGITS, root / "int8", n, tmp_path / "avx2.npz")
    avx2 = np.load(tmp_path / "avx2.npz")
    x = model_inputs(info, bundle_split(info, "int8").val_x[:n])
    here = ort_logits(data, x, exact=True)
    # the reference is float arithmetic: the same numbers whatever kernels the CPU class gets
    assert np.abs(avx2["exact"] - here).max() <= 1e-4
    # the TVM library for that class (vpmaddwd on widened weights, vpmaddubsw where they fit 7 bits) computes what
    # the reference does
    from edgenas.compile.build import compile_onnx_model

    ours = vm_logits(compile_onnx_model(data, "int8", cpu_target("avx2", tmp_path)).executable, x)
    step = output_step(onnx.load_from_string(data))
    assert_matches_the_exact_reference(ours, avx2["exact"], step)
    # what ONNX Runtime's own int8 kernels do on that class is recorded, not trusted: it is its accuracy, not ours
    print(f"ONNX Runtime int8 on {AVX2_CPU}: {np.abs(avx2['shipped'] - avx2['exact']).max() / step:.1f} steps from "
          f"the exact reference")


def test_the_onnxruntime_gate_on_avx2_measures_onnxruntime_there(shipped, tmp_path):
    """`quantize --backend ort` on an AVX2 CPU judges the int8 model with ONNX Runtime's kernels of that class, and
    its accuracy is what ONNX Runtime gives there for the file it wrote."""
    root = shipped[0]
    proc = under_qemu(AVX2_CPU, "-m", "edgenas", "quantize", root / "fp32", "--out", tmp_path / "q", "--backend", "ort",
                      "--calibration", 50, "--json", timeout=900)
    r = json.loads(proc.stdout)
    assert r["evaluated_with"]["runtime"] == "ort" and r["attempts"][0]["reduce_range"] is False
    # the remedies for ONNX Runtime on x86 include 7-bit weights, its documented one for CPUs without VNNI
    if len(r["attempts"]) > 1:
        assert r["attempts"][1]["reduce_range"] is True
    _, info = load_bundle(tmp_path / "q")
    split = bundle_split(info, "q")
    under_qemu(AVX2_CPU, "-c", LOGITS, tmp_path / "q", len(split.val_y), tmp_path / "q.npz")
    shipped_logits = np.load(tmp_path / "q.npz")["shipped"]
    assert float((shipped_logits.argmax(1) == split.val_y).mean()) == r["int8_accuracy"]


def test_the_remedies_depend_on_the_runtime_that_ships(tmp_path):
    """Each class named, not this machine's: the same on any CPU that runs the suite."""
    from edgenas.compress.quantize import QuantizeConfig, Recipe, recipes
    from edgenas.targets import get_target

    pi = get_target("rasp4b64")
    avx2, vnni = (cpu_target(cpu, tmp_path, run=False) for cpu in ("haswell", "icelake-server"))
    for x86 in (avx2, vnni):  # ONNX Runtime on x86 tries 7-bit weights as its first remedy, VNNI or not
        assert recipes(QuantizeConfig(), "ort", x86)[:2] == [Recipe("minmax"), Recipe("minmax", True)]
    # TVM starts from 7-bit weights where its fastest kernels need them (no VNNI), and falls back to full range
    tvm_avx2 = recipes(QuantizeConfig(), "tvm", avx2)
    assert tvm_avx2[0] == Recipe("minmax", True) and tvm_avx2[-1] == Recipe("minmax")
    assert all(not r.reduce_range for r in recipes(QuantizeConfig(), "tvm", vnni))  # VNNI's int8 is exact anyway
    assert all(not r.reduce_range for r in recipes(QuantizeConfig(), "ort", pi))
    assert Recipe("minmax", True).remedy(Recipe("minmax")) == "reduce_range (7-bit weights)"
    assert run_cli("quantize", "x", "--out", "y", "--backend", "nope").returncode == 2


@pytest.mark.parametrize("cpu,instruction", [("haswell", "vpmaddubsw"), ("skylake-avx512", "vpmaddubsw"),
                                             ("alderlake", "vpdpbusd")])
def test_each_x86_class_multiplies_exactly_with_its_own_instruction(shipped, cpu, instruction, tmp_path):
    """Without VNNI, int8 ships with 7-bit weights and multiplies through vpmaddubsw (exact for them); with AVX-VNNI,
    through the 256-bit vpdpbusd. Checked by disassembly on any machine, and run where this machine can."""
    from edgenas.compile.build import compile_onnx_model
    from edgenas.measure.tvm import export_library
    from edgenas.compile.qdq import Reader, pre_process, quantize_qdq, seven_bit_for

    target = cpu_target(cpu, tmp_path, run=False)
    seven = seven_bit_for(target)
    assert seven == (cpu != "alderlake")
    fp32, info = load_bundle(shipped[0] / "fp32")
    split = bundle_split(info, "fp32")
    reader = Reader(info.input_name, model_inputs(info, split.train_x[:50]))
    data = quantize_qdq(pre_process(tmp_path, fp32), tmp_path / "int8.onnx", reader, "minmax", False, [], seven)
    compiled = compile_onnx_model(data, "int8", target)
    asm = subprocess.run(["objdump", "-d", str(export_library(compiled.executable, tmp_path / "m.so", target))],
                         capture_output=True, text=True, check=True).stdout
    assert asm.count(instruction) >= 4 and ("zmm" in asm) == (cpu == "skylake-avx512")
    # every epilogue stores its uint8 outputs a vector at a time (LLVM once stored a depthwise layer's byte by byte)
    assert "vpextrb" not in asm
    if cpu == "alderlake":
        assert "{vex} vpdpbusd" in asm  # AVX-VNNI's encoding, not AVX-512's
    if target.runs_here:
        x = model_inputs(info, split.val_x[:50])
        ours, ref = vm_logits(compiled.executable, x), ort_logits(data, x, exact=True)
        assert_matches_the_exact_reference(ours, ref, output_step(onnx.load_from_string(data)))


def test_code_for_a_cpu_class_this_machine_lacks_does_not_run_here(tmp_path):
    """An x86 target compiled for a named CPU runs here only with that CPU's vector instructions (else SIGILL): the
    accuracy gate then stands the exact reference in for its library, and measuring needs the board."""
    from edgenas.accuracy import Evaluator
    from edgenas.targets import _has_its_instructions, get_target

    avx2_only = {"avx2", "fma"}
    assert _has_its_instructions(cpu_target("haswell", tmp_path, run=False), avx2_only)
    assert not _has_its_instructions(cpu_target("alderlake", tmp_path, run=False), avx2_only)
    assert not _has_its_instructions(cpu_target("skylake-avx512", tmp_path, run=False), avx2_only | {"avx512f"})
    # code this machine cannot run, whatever its class: AVX-VNNI's where it lacks them, else an aarch64 board's
    lacking = next(t for t in (cpu_target("alderlake", tmp_path, run=False), get_target("rasp4b64")) if not t.runs_here)
    judge = Evaluator.for_backend("tvm", lacking)
    assert judge.runtime == "reference" and "does not run here" in judge.stand_in and "exact integers" in judge.stand_in
