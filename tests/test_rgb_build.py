"""The space follows the data: a folder of small RGB images builds end to end with no space made for it."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_SPACE, run_cli
from test_build import build_args

from edgenas.data import load_digits
from edgenas.space import get_space
from edgenas.space.fit import follow_data


def _rgb_digits(root, classes=4, per=50, size=16):
    """Real images in colour: digits drawn in a random ink on a random background (colour says nothing of the
    class), as PNG files in one folder per class."""
    d, rng = load_digits(), np.random.default_rng(0)
    for c in range(classes):
        (root / f"digit{c}").mkdir(parents=True)
        for i, j in enumerate(np.flatnonzero(d.y == c)[:per]):
            ink = d.x[j, 0].astype(np.float32)[..., None] / 255
            rgb = (ink * rng.integers(0, 256, 3) + (1 - ink) * rng.integers(0, 256, 3)).astype(np.uint8)
            Image.fromarray(rgb, "RGB").resize((size, size), Image.BILINEAR).save(root / f"digit{c}" / f"{i}.png")
    return root


def test_an_rgb_image_folder_builds_end_to_end_on_a_space_made_for_grey_digits(tmp_path):
    images = _rgb_digits(tmp_path / "images")
    tables, out = tmp_path / "tables", tmp_path / "run"
    proc = run_cli(*build_args(tables, out, 5, "--data", images, "--epochs", 2), "--json", check=0)
    assert "made to fit" in proc.stderr and "3 channel(s), 4 classes" in proc.stderr
    sm = json.loads(proc.stdout)["summary"]
    fitted = follow_data(get_space(TINY_SPACE), 3, 16, 4)
    assert f"/{fitted.name}/" in sm["table"] and sm["within_budget"]
    assert 0 <= sm["accuracy"]["artifact"] <= 1
    meta = json.loads((out / "artifact" / "metadata.json").read_text())
    assert meta["input"]["shape"][:2] == [1, 3] and len(meta["input"]["normalization"]["mean"]) == 3
    assert meta["classes"] == ["digit0", "digit1", "digit2", "digit3"]
    ran = json.loads(run_cli("run", out / "artifact", "-i", images / "digit2" / "3.png", "--json", check=0).stdout)
    assert ran["label"] in meta["classes"] and len(ran["logits"]) == 4


@pytest.mark.parametrize("channels, size, classes, resolutions", [
    (1, 28, 10, (20, 24, 28)),  # the digits (and Fashion-MNIST) fit the digits space as it is
    (3, 32, 10, (20, 24, 28)),  # CIFAR-10's size: RGB, looked at as small as the space does
    (3, 96, 2, (20, 24, 28)),  # Visual Wake Words' size
    (1, 16, 10, (12, 16)),  # smaller images than the space's: scaled down, never up
])
def test_the_digits_space_follows_the_data(channels, size, classes, resolutions):
    digits = get_space("digits")
    fitted = follow_data(digits, channels, size, classes)
    assert (fitted.in_channels, fitted.num_classes, fitted.resolutions) == (channels, classes, resolutions)
    assert fitted.stages == digits.stages and fitted.kernel_sizes == digits.kernel_sizes
    assert (fitted is digits) == (fitted.hash == digits.hash) == ((channels, size, classes) == (1, 28, 10))


@pytest.mark.parametrize("channels, size, classes", [(3, 32, 10), (3, 96, 2), (1, 16, 10)])
def test_a_fitted_space_is_named_back_by_the_name_the_build_prints(channels, size, classes):
    """`edgenas profile --space <that name>` measures the tables a build on such images budgets against."""
    fitted = follow_data(get_space("digits"), channels, size, classes)
    again = get_space(fitted.name)
    assert again == fitted and again.hash == fitted.hash


@pytest.mark.parametrize("name, says", [
    ("digits-c1-r28-n10", "name it 'digits'"),  # the template as it is
    ("digits-c3-r32-n1", "2 classes"),
    ("nospace-c3-r32-n10", "unknown search space 'nospace-c3-r32-n10'"),
])
def test_a_bad_fitted_name_is_one_line(name, says):
    proc = run_cli("profile", "--space", name, "--backend", "ort", check=None)
    assert proc.returncode != 0 and says in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
