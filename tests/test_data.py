import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from edgenas.data import load_dataset, split, to_input
from edgenas.errors import BadInput


def test_bundled_digits_split_is_stratified_seeded_and_normalised_on_train():
    data = load_dataset("digits")
    assert data.x.shape == (5000, 1, 28, 28) and data.x.dtype == np.uint8 and len(data.classes) == 10
    s = split(data, 0.2, seed=3)
    assert np.all(np.bincount(s.val_y) == 100) and len(s.train_y) == 4000
    again, other = split(data, 0.2, seed=3), split(data, 0.2, seed=4)
    assert np.array_equal(s.val_x, again.val_x) and not np.array_equal(s.val_x, other.val_x)
    train = s.train_x.astype(np.float64) / 255
    assert s.normalization.mean[0] == pytest.approx(train.mean()) and s.normalization.std[0] == pytest.approx(train.std())
    x = to_input(s.train_x, s.normalization)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert tuple(to_input(s.val_x[:4], s.normalization, 20).shape) == (4, 1, 20, 20)


def test_fashion_loads_from_debians_package_splits_stratified_and_fingerprints():
    data = load_dataset("fashion")
    assert data.x.shape == (70000, 1, 28, 28) and data.x.dtype == np.uint8 and len(data.classes) == 10
    assert np.all(np.bincount(data.y) == 7000) and data.classes[0] == "T-shirt/top"
    s = split(data, 0.1, seed=1)
    assert np.all(np.bincount(s.val_y) == 700) and len(s.train_y) == 63000
    assert np.array_equal(s.val_x, split(data, 0.1, seed=1).val_x)
    assert data.fingerprint == load_dataset("fashion").fingerprint != load_dataset("digits").fingerprint
    # not the digits under another name: a clothing image is not a stroke on black
    assert abs(float(data.x.mean()) - float(load_dataset("digits").x.mean())) > 10


def test_a_missing_named_data_set_says_how_to_install_it(tmp_path, monkeypatch):
    import edgenas.data as d

    monkeypatch.setattr(d, "FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(BadInput, match="tools/install-data.sh"):
        d.load_fashion()
    (tmp_path / "nowhere").mkdir()
    for part in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (tmp_path / "nowhere" / f"{part}-{kind}-ubyte.gz").write_bytes(__import__("gzip").compress(b"\0" * 40))
    with pytest.raises(BadInput, match="not an IDX file"):
        d.load_fashion()


def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return str(path)


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(12) % 3
    d = load_dataset(_npz(tmp_path, x=rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8), y=y))
    assert d.x.shape == (12, 3, 8, 8) and d.classes == ("0", "1", "2")
    d = load_dataset(_npz(tmp_path, x=rng.random((12, 8, 8)), y=y))
    assert d.x.shape == (12, 1, 8, 8) and d.x.dtype == np.uint8 and d.x.max() > 128


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((6, 8, 8))), "missing array 'y'"),
    (dict(x=np.zeros((6, 8, 8)), y=np.array([0, 1, 5, 0, 1, 5])), "labels out of range"),
    (dict(x=np.zeros((6, 8, 8)), y=np.array([-1, 0, 1, -1, 0, 1])), "labels out of range"),
    (dict(x=np.zeros((6, 8, 8)), y=np.zeros(6, int)), "at least two classes"),
    (dict(x=np.zeros((6, 8, 8)), y=np.array([0, 1, 0])), "6 images but 'y' has 3"),
])
def test_bad_npz_is_named(tmp_path, arrays, message):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(BadInput, match=message) as e:
        load_dataset(path)
    assert path in str(e.value)


def _folder(tmp_path, sizes=((8, 8),) * 3, classes=("cat", "dog")):
    root = tmp_path / "imgs"
    for c in classes:
        (root / c).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.fromarray(np.full(size[::-1], 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    d = load_dataset(str(_folder(tmp_path)))
    assert d.x.shape == (6, 1, 8, 8) and d.classes == ("cat", "dog") and list(d.y) == [0, 0, 0, 1, 1, 1]


def test_image_folder_errors(tmp_path):
    root = _folder(tmp_path, sizes=((8, 8), (8, 8), (10, 8)))
    with pytest.raises(BadInput, match="differ in size.*--resize"):
        load_dataset(str(root))
    assert load_dataset(str(root), resize=6).x.shape == (6, 1, 6, 6)
    (root / "empty").mkdir()
    with pytest.raises(BadInput, match="empty: class folder holds no images"):
        load_dataset(str(root))
    (root / "empty" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(BadInput, match="bad.png: unreadable image"):
        load_dataset(str(root))


def test_missing_data_path_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "run"), "nope", "no such file")
