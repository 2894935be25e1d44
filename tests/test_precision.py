"""`build --precision auto`: int8 only where it runs faster than fp32 on the target, measured as it ships."""

import dataclasses
import json

from conftest import TINY_SPACE
from edgenas.measure.timing import MeasureConfig
from edgenas.space import get_space
from edgenas.tables.key import TableKey
from edgenas.tables.precision import TIE, choose_precision, probe_networks, probe_path
from edgenas.targets import get_target

CFG = MeasureConfig(repeat=5)


def _key(threads=1):
    return TableKey(get_target("host"), "ort", "int8", get_space(TINY_SPACE), threads)


def test_auto_measures_both_precisions_and_ships_the_faster(tmp_path):
    key = _key()
    choice = choose_precision("auto", key, tmp_path, CFG, can_measure=True)
    i8, f32 = (sum(choice.measured_ms[p]) for p in ("int8", "fp32"))
    assert len(choice.measured_ms["int8"]) == len(choice.measured_ms["fp32"]) == len(probe_networks(key.space)) == 2
    assert min(i8, f32) > 0 and choice.precision == ("int8" if i8 <= f32 * (1 + TIE) else "fp32")
    assert choice.precision in choice.why and f"{i8:.4f} ms as int8" in choice.why
    probe = json.loads(probe_path(key, tmp_path).read_text())
    assert choice.probe == str(probe_path(key, tmp_path)) and probe["measured_ms"] == choice.measured_ms
    # kept for this device: a second build reads it instead of measuring again
    again = choose_precision("auto", key, tmp_path, CFG, can_measure=True)
    assert again == choice and json.loads(probe_path(key, tmp_path).read_text())["measured"] == probe["measured"]
    # measured again when what it measured no longer holds (here: another thread count)
    other = choose_precision("auto", _key(threads=2), tmp_path, CFG, can_measure=True)
    assert json.loads(probe_path(key, tmp_path).read_text())["identity"]["threads"] == 2 and other.probe == choice.probe


def test_an_explicit_precision_or_an_unmeasurable_target_measures_nothing(tmp_path):
    asked = choose_precision("fp32", _key(), tmp_path, CFG, can_measure=True)
    assert asked.precision == "fp32" and asked.measured_ms == {} and "--precision fp32" in asked.why
    board = choose_precision("auto", _key(), tmp_path, CFG, can_measure=False)
    assert board.precision == "int8" and "not measured here" in board.why
    assert not probe_path(_key(), tmp_path).exists()


def test_side_by_side_compiles_and_times_the_models_as_they_ship_with_tvm():
    from edgenas.compress.surgery import macs_params
    from edgenas.measure.batch import GraphJob
    from edgenas.space.blocks import Network
    from edgenas.tables.precision import measure_side_by_side

    key = TableKey(get_target("host"), "tvm", "int8", get_space(TINY_SPACE), 1)
    big = key.space.largest()
    small = dataclasses.replace(key.space.smallest(), resolution=big.resolution)  # one input shape for all
    macs = [macs_params(Network(key.space, a))[0] for a in (big, small)]
    assert macs[0] > 2.5 * macs[1]
    shape = GraphJob(key.space, arch=big).shape
    models = {"int8": GraphJob(key.space, arch=big).onnx("int8", key.target),
              "fp32": GraphJob(key.space, arch=big).onnx("fp32", key.target),
              "small": GraphJob(key.space, arch=small).onnx("fp32", key.target)}
    ms = measure_side_by_side(key, CFG, models, shape)
    assert list(ms) == ["int8", "fp32", "small"] and min(ms.values()) > 0
    assert ms["fp32"] > ms["small"]  # a network with less than half the work is not measured slower
