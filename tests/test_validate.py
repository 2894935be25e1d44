"""validate on a few real networks with ONNX Runtime and TVM."""

import json

import pytest

from conftest import FAST, TINY_SPACE, assert_one_line_error, run_cli
from edgenas.tables.latency_table import LatencyTable


@pytest.mark.parametrize("backend", ["ort", "tvm"])
def test_validate_fits_correction_and_reports(tables, backend):
    common = ("--target", "host", "--space", TINY_SPACE, "--backend", backend, "--tables", tables, *FAST)
    run_cli("profile", *common, check=0)
    [out] = json.loads(run_cli("validate", *common, "--samples", 10, "--json", check=0).stdout)
    assert out["samples"] == 10 and out["train"] + out["held_out"] == 10 and out["measured"] == 10
    for name in ("raw", "corrected"):
        m = out[name]
        assert m["n"] == out["held_out"] and m["rmse_ms"] >= 0 and 0 <= m["within_10pct"] <= 1 and -1 <= m["kendall_tau"] <= 1
    # the stored correction is what predictions now use
    table = LatencyTable.load(out["table"])
    assert table.correction["coef"] == out["correction"]["coef"] and table.correction["held_out"] == out["corrected"]
    report = json.loads(open(out["report"]).read())
    assert len(report["networks"]) == 10 and all(n["measured_ms"] > 0 for n in report["networks"])
    with open(out["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # whole-network measurements are kept: a second run measures nothing new
    [again] = json.loads(run_cli("validate", *common, "--samples", 10, "--json", check=0).stdout)
    assert again["measured"] == 0 and again["reused"] == 10 and again["corrected"] == out["corrected"]


def test_validate_without_table_says_how_to_make_one(tables):
    assert_one_line_error(run_cli("validate", "--space", TINY_SPACE, "--tables", tables), "edgenas profile")
    assert_one_line_error(run_cli("validate", "--space", TINY_SPACE, "--tables", tables, "--backend", "tvm"), "tvm.json")


def test_too_few_samples_refused(tables):
    assert_one_line_error(run_cli("validate", "--space", TINY_SPACE, "--tables", tables, "--samples", 2), "--samples 2")
