import json

import pytest

from conftest import assert_one_line_error, run_cli
from edgenas.errors import BadInput
from edgenas.targets import get_target, list_targets, load_target_file

REQUIRED = ("host", "rasp4b64", "jetson-orin-nano", "jetson-nano")


def test_shipped_targets_resolve_to_tvm_targets():
    targets = {t.name: t for t in list_targets()}
    assert set(REQUIRED) <= set(targets)
    assert targets["rasp4b64"].tvm.attrs["mcpu"] == "cortex-a72"
    orin = targets["jetson-orin-nano"].tvm
    assert orin.kind.name == "nvptx" and orin.attrs["mcpu"] == "sm_87"
    assert orin.host.attrs["mtriple"] == "aarch64-linux-gnu"
    # "native" is replaced by the CPU LLVM sees on this machine
    assert targets["host"].tvm.attrs["mcpu"] not in ("", "native")
    assert targets["host"].runs_here and not targets["rasp4b64"].runs_here


def test_targets_cli_lists_json():
    out = json.loads(run_cli("targets", "--json", check=0).stdout)
    assert {t["name"] for t in out} >= set(REQUIRED)
    assert all("rpc_key" in t and t["ort_providers"] for t in out)


def test_unknown_target_lists_known_ones():
    line = assert_one_line_error(run_cli("profile", "--target", "nosuchboard"), "nosuchboard")
    for name in REQUIRED:
        assert name in line


def _write(tmp_path, text):
    path = tmp_path / "board.toml"
    path.write_text(text)
    return path


GOOD = """
name = "myboard"
description = "x"
device = "cpu"
arch = "x86_64"
[tvm]
target = { kind = "llvm", mtriple = "x86_64-linux-gnu" }
cross_compiler = ""
[onnxruntime]
providers = ["CPUExecutionProvider"]
[rpc]
key = "myboard"
"""


def test_user_target_file_is_accepted_by_path(tmp_path):
    t = get_target(str(_write(tmp_path, GOOD)))
    assert t.name == "myboard" and t.threads == 0 and t.thread_count() >= 1


@pytest.mark.parametrize("edit, field", [
    (lambda s: s.replace('device = "cpu"\n', ""), "device"),
    (lambda s: s.replace('device = "cpu"', 'device = "tpu"'), "device"),
    (lambda s: s.replace('key = "myboard"', "key = 3"), "rpc.key"),
    (lambda s: s.replace('providers = ["CPUExecutionProvider"]', "providers = []"), "onnxruntime.providers"),
    (lambda s: s.replace('cross_compiler = ""\n', ""), "tvm.cross_compiler"),
])
def test_bad_target_field_is_named(tmp_path, edit, field):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(BadInput, match=f"{path}.*'{field}'"):
        load_target_file(path)


def test_invalid_tvm_target_is_named_in_cli(tmp_path):
    path = _write(tmp_path, GOOD.replace('kind = "llvm"', 'kind = "nosuchkind"'))
    assert_one_line_error(run_cli("profile", "--target", path, "--backend", "tvm", "--tables", tmp_path),
                          str(path), "tvm.target")


def test_malformed_toml_is_named(tmp_path):
    path = _write(tmp_path, "name = [unclosed")
    assert_one_line_error(run_cli("profile", "--target", path), str(path), "TOML")
