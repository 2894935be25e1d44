"""validate on a few real networks with ONNX Runtime and TVM."""

import json
import shutil

import pytest

from conftest import FAST, TINY_SPACE, assert_one_line_error, run_cli, said, table_file
from edgenas.tables.latency_table import LatencyTable
from edgenas.tables.metrics import prediction_metrics


@pytest.mark.parametrize("backend, precision", [("ort", "int8"), ("tvm", "fp32")])
def test_validate_fits_correction_and_reports(tables, backend, precision, request, tmp_path):
    common = ("--target", "host", "--space", TINY_SPACE, "--backend", backend, "--precision", precision, "--tables", tables,
              *FAST)
    if backend == "tvm":  # the shared TVM table (profiling it takes a while; test_profile covers that), and an empty database
        shutil.copytree(request.getfixturevalue("tvm_fp32_tables"), tables)
        common += ("--tuning-db", tmp_path / "no-db")
    else:
        run_cli("profile", *common, check=0)
    [out] = json.loads(run_cli("validate", *common, "--samples", 10, "--json", check=0).stdout)
    assert out["samples"] == 10 and out["train"] + out["held_out"] == 10 and out["measured"] == 10
    report = json.loads(open(out["report"]).read())
    held = [n for n in report["networks"] if n["split"] == "held_out"]
    assert len(held) == out["held_out"] > 1
    for name in ("raw", "corrected"):  # the metrics are of the held-out networks the report lists, not of the fit
        expect = prediction_metrics([n[f"{name}_ms"] for n in held], [n["measured_ms"] for n in held])
        assert out[name] == pytest.approx(expect, rel=1e-9)
    # the stored correction is what predictions now use
    table = LatencyTable.load(out["table"])
    assert list(table.correction.coef) == out["correction"]["coef"] and table.correction.held_out == out["corrected"]
    assert len(report["networks"]) == 10 and all(n["measured_ms"] > 0 for n in report["networks"])
    with open(out["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # whole-network measurements are kept: a second run measures nothing new
    [again] = json.loads(run_cli("validate", *common, "--samples", 10, "--json", check=0).stdout)
    assert again["measured"] == 0 and again["reused"] == 10 and again["corrected"] == out["corrected"]


def test_validate_without_a_table_for_this_machine_profiles_one(tables):
    """Not a refusal: the table is measured first, with one line that says why, then validated."""
    proc = run_cli("validate", "--space", TINY_SPACE, "--backend", "ort", "--tables", tables, "--samples", 6, *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    [out] = json.loads(proc.stdout)
    assert out["table"] == str(table_file(tables)) and out["measured"] == 6
    lines = said(proc.stderr)
    assert len(lines) == 1 and "no ort-int8 table" in lines[0] and "profiling it, about" in lines[0], proc.stderr


def test_too_few_samples_refused(tables):
    assert_one_line_error(run_cli("validate", "--space", TINY_SPACE, "--tables", tables, "--samples", 2), "--samples 2")
