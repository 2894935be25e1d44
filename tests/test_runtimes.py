"""Artifacts for the runtimes a build may ship instead of TVM's library: ONNX Runtime and OpenVINO, each loaded and run
as the artifact's README says, judged against the exact reference, and sealed like every artifact."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from edgenas.accuracy import Evaluator, bundle_split
from edgenas.bundle import load_bundle
from edgenas.compress.quantize import QuantizeConfig
from edgenas.targets import get_target


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_an_artifact_of_another_runtime_loads_and_runs_as_its_readme_says(shipped, runtime, tmp_path):
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the optional OpenVINO extra is not installed")
    root = shipped[0]
    out = tmp_path / runtime
    meta = json.loads(run_cli("compile", root / "int8", "--backend", runtime, "--out", out, "--repeat", 5, "--json",
                              check=0).stdout)
    assert meta["runtime"] == runtime and set(meta["files"]) == {"model.onnx", "README.md"} and meta["compile"] is None
    assert not (out / "model.so").exists() and meta["latency"]["measured"]["count"] == 5
    assert meta["latency"]["measured"]["how"]["timer"] == f"{runtime} in a Python loop"
    # its accuracy is its own runtime's, and within the int8 gate of the exact reference (the QDQ model in float)
    data, info = load_bundle(root / "int8")
    split = bundle_split(info, str(root / "int8"))
    own = Evaluator.for_backend(runtime, get_target("host"))
    assert meta["accuracy"]["artifact"] == own.accuracy(data, info, split)
    reference = Evaluator("reference").accuracy(data, info, split)
    assert abs(meta["accuracy"]["artifact"] - reference) * 100 <= QuantizeConfig.max_drop
    # the README's code, as written, in the artifact's directory: the runtime alone, no edgenas
    readme = (out / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1) + "\nnp.save('readme-logits.npy', logits)\n"
    assert "edgenas" not in code
    proc = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    readme_logits = np.load(out / "readme-logits.npy")
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros(info.input_shape, np.float32))
    ran = json.loads(run_cli("run", out, "--input", zeros, "--json", check=0).stdout)
    np.testing.assert_allclose(ran["logits"], readme_logits.reshape(-1), rtol=1e-5, atol=1e-5)
    assert ran["class_index"] == int(np.argmax(readme_logits))
    b = json.loads(run_cli("bench", out, "--repeat", 5, "--json", check=0).stdout)
    assert b["median_ms"] > 0 and b["count"] == 5 and b["threads"] == 1
    # sealed: a tampered model is refused in one line before any runtime loads it
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert_one_line_error(run_cli("run", copy, "--input", zeros), "model.onnx", "sha256")
    assert_one_line_error(run_cli("bench", copy), "model.onnx", "sha256")
    # and it is measured where it runs, not over TVM RPC
    assert_one_line_error(run_cli("bench", out, "--rpc-tracker", "127.0.0.1:9", "--rpc-key", "k"), runtime, "RPC")


def test_a_tvm_artifact_runs_as_its_readme_says_with_tvm_s_runtime_alone(shipped, tmp_path):
    """As a board runs it: TVM's Python package without its compiler library, `TVM_USE_RUNTIME_LIB=1`, no edgenas."""
    import tvm

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from gpu_check import NOT_RUNTIME

    site = tmp_path / "site"
    shutil.copytree(Path(tvm.__file__).parent, site / "tvm", ignore=shutil.ignore_patterns(*NOT_RUNTIME))
    art = shipped[0] / "art"
    code = re.search(r"```python\n(.*?)```", (art / "README.md").read_text(), re.S).group(1)
    code += "\nnp.save(OUT, logits)\nimport tvm.base; assert tvm.base._RUNTIME_ONLY and 'site' in tvm.__file__\n"
    out = tmp_path / "logits.npy"
    proc = subprocess.run([sys.executable, "-c", code.replace("OUT", repr(str(out)))], cwd=art, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros(shipped[3]["input"]["shape"], np.float32))
    ran = json.loads(run_cli("run", art, "--input", zeros, "--json", check=0).stdout)
    np.testing.assert_allclose(ran["logits"], np.load(out).reshape(-1), rtol=1e-5, atol=1e-5)
