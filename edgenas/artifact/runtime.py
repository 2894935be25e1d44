"""`edgenas run` and `edgenas bench`: an artifact's prediction and latency, with its own runtime only (the TVM
runtime for a library, ONNX Runtime or OpenVINO for their artifacts)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgenas.artifact.artifact import Artifact
from edgenas.artifact.package import measure_artifact, measure_onnx_artifact
from edgenas.data import IMAGE_SUFFIXES, to_input
from edgenas.errors import BadInput, EdgenasError
from edgenas.rpc import RPCSettings
from edgenas.measure.timing import MeasureConfig


def _image(path: Path, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise BadInput(f"{path}: unreadable image ({e})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_input(path: Path, art: Artifact) -> np.ndarray:
    """The model input for an image file, a uint8 image array (.npy), or an already preprocessed float .npy."""
    path, inp = Path(path), art.meta.input
    shape, channels = inp.shape, inp.shape[1]
    if not path.is_file():
        raise BadInput(f"--input {path}: no such file")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise BadInput(f"--input {path}: not a readable .npy file ({e})") from None
        if not isinstance(arr, np.ndarray):
            arr.close()
            raise BadInput(f"--input {path}: an .npz archive, not a .npy array")
        if arr.dtype != np.uint8:
            if arr.dtype.kind not in "biuf":
                raise BadInput(f"--input {path}: a preprocessed input must hold real numbers, not {arr.dtype}")
            if arr.size != np.prod(shape):
                raise BadInput(f"--input {path}: a preprocessed input must have shape {list(shape)}, not {list(arr.shape)}")
            with np.errstate(over="ignore"):  # a value too large for the model's dtype becomes inf, refused below
                x = arr.reshape(shape).astype(inp.dtype)
            bad = np.flatnonzero(~np.isfinite(x)) if x.dtype.kind == "f" else []
            if len(bad):
                where = [int(i) for i in np.unravel_index(bad[0], arr.shape)]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise BadInput(f"--input {path}: value {arr.flat[bad[0]]} at index {where}{more} is not a finite "
                               f"{x.dtype} number; a model input must hold finite numbers")
            return x
        image = arr[None] if arr.ndim == 2 else arr
        if image.ndim != 3 or image.shape[0] != channels:
            raise BadInput(f"--input {path}: a uint8 image array must be (H, W) or ({channels}, H, W), not {list(arr.shape)}")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        image = _image(path, channels)
    else:
        raise BadInput(f"--input {path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .npy file")
    if inp.normalization is None:
        raise BadInput(f"{art.path}: the artifact records no preprocessing; give --input as a preprocessed float "
                       f".npy of shape {list(shape)}")
    x = to_input(image[None], inp.normalization, shape[2])
    return x.numpy().astype(inp.dtype)


def predict(art: Artifact, x: np.ndarray) -> np.ndarray:
    target = art.meta.target
    if not target.runs_here():
        raise BadInput(f"{art.model_file}: made for {target.arch} ({target.device}, target '{target.name}'), "
                       f"not this {platform.machine()} machine; run it on the board, or time it with `edgenas bench "
                       f"--rpc-tracker`")
    if art.meta.runtime != "tvm":
        from edgenas.accuracy import Evaluator

        return Evaluator.for_backend(art.meta.runtime, target.rebuilt()).logits(art.model_file.read_bytes(), x)
    import tvm
    from tvm import relax

    try:
        lib = tvm.runtime.load_module(str(art.library))
    except Exception as e:  # TVMError from dlopen
        raise EdgenasError(f"{art.library}: the TVM runtime cannot load it ({str(e).strip().splitlines()[-1]})") from None
    vm = relax.VirtualMachine(lib, tvm.cpu(0))
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def bench(art: Artifact, cfg: MeasureConfig, threads: int | None, rpc: RPCSettings | None) -> dict:
    """Latency of the artifact here with its runtime, or of its library on the board behind `rpc` (uploaded)."""
    target = art.meta.target.rebuilt()
    threads = threads or target.thread_count()
    if art.meta.runtime != "tvm":
        if rpc is not None:
            raise BadInput(f"{art.path}: an {art.meta.runtime} artifact is measured on the machine that runs it, not "
                           f"over TVM RPC; run `edgenas bench` there")
        return measure_onnx_artifact(art.model_file.read_bytes(), art.meta.runtime, target, art.input_shape, cfg, threads,
                                     art.model_file)
    return measure_artifact(art.library, target, art.input_shape, art.meta.input.dtype, cfg, threads, rpc)
