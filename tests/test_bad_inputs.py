"""`edgenas run` refuses an input that holds a value that is not a finite number, in one line, never a prediction."""

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize("value, dtype", [(np.nan, np.float32), (np.inf, np.float32), (-np.inf, np.float32),
                                          (1e300, np.float64)])  # the last one becomes inf in the model's float32
def test_non_finite_input_is_refused(shipped, tmp_path, value, dtype):
    art = shipped[0] / "art"
    shape = json.loads((art / "metadata.json").read_text())["input"]["shape"]
    x = np.zeros(shape, dtype)
    x[0, 0, 1, 2] = x[0, 0, 3, 0] = value
    path = tmp_path / "x.npy"
    np.save(path, x)
    line = assert_one_line_error(run_cli("run", art, "--input", path), str(path), "index [0, 0, 1, 2] (and 1 more)",
                                 "not a finite")
    assert str(value) in line


def test_finite_float_input_is_a_prediction(shipped, tmp_path):
    art = shipped[0] / "art"
    shape = json.loads((art / "metadata.json").read_text())["input"]["shape"]
    np.save(tmp_path / "x.npy", np.full(shape, 0.5, np.float64))
    r = json.loads(run_cli("run", art, "--input", tmp_path / "x.npy", "--json", check=0).stdout)
    # float64 is taken as the float32 it rounds to: the same prediction as the float32 input gives
    np.save(tmp_path / "x32.npy", np.full(shape, 0.5, np.float32))
    r32 = json.loads(run_cli("run", art, "--input", tmp_path / "x32.npy", "--json", check=0).stdout)
    assert r == r32 and len(r["logits"]) == 10
