"""`build --backend auto --precision auto`: the runtime and precision that ship are the fastest measured, as they ship."""

import json

import pytest

from conftest import TINY_SPACE
from edgenas.measure.timing import MeasureConfig
from edgenas.space import get_space
from edgenas.tables.deployment import (TIE, Deployment, choose_deployment, fastest, last_word, probe_networks,
                                       probe_path)
from edgenas.tables.key import TableKey
from edgenas.targets import get_target

CFG = MeasureConfig(repeat=5)


def _key(backend="ort", threads=1):
    return TableKey(get_target("host"), backend, "int8", get_space(TINY_SPACE), threads)


def _choose(tmp_path, backend="ort", precision="auto", threads=1, can_measure=True):
    return choose_deployment(backend, precision, lambda b: _key(b, threads), tmp_path, lambda b: CFG, can_measure)


def test_auto_precision_measures_both_precisions_and_ships_the_faster(tmp_path):
    key = _key()
    choice = _choose(tmp_path)
    measured = choice.measured_ms["ort"]
    i8, f32 = (sum(measured[p]) for p in ("int8", "fp32"))
    assert list(choice.measured_ms) == ["ort"] and choice.backend == "ort"
    assert len(measured["int8"]) == len(measured["fp32"]) == len(probe_networks(key.space)) == 2
    assert min(i8, f32) > 0 and choice.precision == ("int8" if i8 <= f32 * (1 + TIE) else "fp32")
    assert choice.why.startswith(f"ort {choice.precision}: ") and f"{min(i8, f32):.4f}"[:5] in choice.why
    probe = json.loads(probe_path(key, tmp_path).read_text())
    assert choice.probe == {"ort": str(probe_path(key, tmp_path))} and probe["measured_ms"] == measured
    # kept for this device: a second build reads it instead of measuring again
    again = _choose(tmp_path)
    assert again == choice and json.loads(probe_path(key, tmp_path).read_text())["measured"] == probe["measured"]
    # measured again when what it measured no longer holds (here: another thread count)
    other = _choose(tmp_path, threads=2)
    assert json.loads(probe_path(key, tmp_path).read_text())["identity"]["threads"] == 2 and other.probe == choice.probe


def test_an_explicit_choice_or_an_unmeasurable_target_measures_nothing(tmp_path):
    asked = _choose(tmp_path, precision="fp32")
    assert (asked.backend, asked.precision, asked.measured_ms) == ("ort", "fp32", {}) and "--precision fp32" in asked.why
    board = _choose(tmp_path, backend="auto", can_measure=False)
    assert (board.backend, board.precision) == ("tvm", "int8") and "not measured here" in board.why
    assert not probe_path(_key(), tmp_path).exists() and not probe_path(_key("tvm"), tmp_path).exists()


def test_the_rule_keeps_the_preferred_deployment_within_the_tie_and_takes_a_clearly_faster_one():
    tvm8, ort8, ov8 = Deployment("tvm", "int8"), Deployment("ort", "int8"), Deployment("openvino", "int8")
    pick, why = fastest({tvm8: 1.0, ort8: 1.0 / (1 + TIE / 2), ov8: 2.0}, "x", "here")
    assert pick == tvm8 and why.startswith("tvm int8: x ran in 1.0000 ms with tvm int8 here")
    assert "ort int8 0.98" in why and "openvino int8 2.0000" in why
    pick, _ = fastest({tvm8: 1.0, ort8: 0.9, ov8: 0.8}, "x", "here")
    assert pick == ov8
    # the last word passes over a deployment it refuses (int8 failing the gate on its own runtime), and says so
    pick, why = last_word({tvm8: 1.0, ort8: 0.9, ov8: 0.8}, lambda d: "lost 3 points" if d == ov8 else None, "x", "here")
    assert pick == ort8 and why.endswith("refused: openvino int8 (lost 3 points)")


def _slowed(monkeypatch, slow: str):
    """ONNX Runtime or OpenVINO really made slower: every call of `slow`'s model spins 3 ms more. TVM is left out of
    these runs: it is timed inside TVM's own C++ loop, which no Python wrapper can slow."""
    import importlib
    import time

    import edgenas.tables.deployment as deployment

    monkeypatch.setattr(deployment, "reachable_backends", lambda target, rpc: (["ort", "openvino"], []))
    module = importlib.import_module(f"edgenas.measure.{slow}")
    original = module.time_python_call

    def spin(fn, cfg):
        def call():
            fn()
            end = time.perf_counter() + 3e-3
            while time.perf_counter() < end:
                pass
        return original(call, cfg)

    monkeypatch.setattr(module, "time_python_call", spin)


@pytest.mark.parametrize("slow, ships", [("ort", "openvino"), ("openvino", "ort")])
def test_auto_ships_the_runtime_that_measures_fastest_and_flips_when_it_is_slowed(tmp_path, monkeypatch, slow, ships):
    pytest.importorskip("openvino", reason="the optional OpenVINO extra is not installed")
    _slowed(monkeypatch, slow)
    choice = _choose(tmp_path, backend="auto")
    sums = {b: {p: sum(v) for p, v in by_p.items()} for b, by_p in choice.measured_ms.items()}
    assert set(sums) == {"ort", "openvino"} and min(sums[slow].values()) > 3 * 2 * 0.9  # two networks, 3 ms each
    assert choice.backend == ships and choice.why.startswith(f"{ships} {choice.precision}: ")


def test_a_missing_openvino_is_passed_over_in_one_line(tmp_path):
    """A Python where `import openvino` fails, as on a machine without the extra: the precision stage of an auto build
    measures the others and says in one line why OpenVINO was not."""
    import os
    import subprocess
    import sys

    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "openvino.py").write_text("raise ImportError('hidden by the test')\n")
    script = f"""
import sys
from edgenas.pipeline.build import run
from edgenas.pipeline.config import BuildConfig
cfg = BuildConfig.from_flags(space="{TINY_SPACE}", tables=r"{tmp_path / 'tables'}", out=r"{tmp_path / 'run'}",
                             threads=1, repeat=3, precision="int8")
p = run(cfg, only=("precision",)).results["precision"]
print(p.backend, sorted(p.measured_ms), p.passed_over)
"""
    env = {**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "passed over" in ln]
    assert len(said) == 1 and "openvino: --backend openvino: OpenVINO is not installed" in said[0], proc.stderr
    assert "Traceback" not in proc.stderr
    backend = proc.stdout.split(" ", 1)[0]
    assert backend in ("tvm", "ort") and "['ort', 'tvm']" in proc.stdout and "OpenVINO is not installed" in proc.stdout


def test_side_by_side_compiles_and_times_the_models_as_they_ship_with_tvm():
    from edgenas.measure.batch import GraphJob
    from edgenas.measure.shipped import measure_side_by_side

    key = TableKey(get_target("host"), "tvm", "int8", get_space(TINY_SPACE), 1)
    big, small = key.space.largest(), key.space.smallest()
    assert big.resolution != small.resolution  # networks of one space may differ in input shape: each gets its own
    models = {"int8": GraphJob(key.space, arch=big).onnx("int8", key.target),
              "fp32": GraphJob(key.space, arch=big).onnx("fp32", key.target),
              "small": GraphJob(key.space, arch=small).onnx("fp32", key.target)}
    shapes = {"int8": GraphJob(key.space, arch=big).shape, "fp32": GraphJob(key.space, arch=big).shape,
              "small": GraphJob(key.space, arch=small).shape}
    ms = measure_side_by_side(key, CFG, models, shapes)
    # every model timed, in the order given (which is faster is the CPU's business: blocks this small are mostly overhead)
    assert list(ms) == ["int8", "fp32", "small"] and min(ms.values()) > 0
    ort = TableKey(get_target("host"), "ort", "fp32", key.space, 1)
    ms = measure_side_by_side(ort, CFG, {n: models[n] for n in ("fp32", "small")}, shapes)
    assert list(ms) == ["fp32", "small"] and min(ms.values()) > 0
