"""What export, prune and quantize judge a model by: its validation accuracy, measured with ONNX Runtime."""

from __future__ import annotations

import numpy as np

from edgenas.bundle import ModelInfo
from edgenas.data import Split, load_split, to_input
from edgenas.errors import BadInput
from edgenas.measure.ort import make_session


def bundle_split(info: ModelInfo | None, where: str) -> Split:
    if info is None or info.data is None or info.normalization is None:
        raise BadInput(f"{where}: no model.json with the data and preprocessing the model was trained with; "
                       f"make the model with `edgenas export` (or keep its model.json next to it)")
    return load_split(info.data, where)


def model_inputs(info: ModelInfo, images: np.ndarray) -> np.ndarray:
    """uint8 images -> the float inputs the model takes, preprocessed as at training."""
    return to_input(images, info.normalization, info.input_shape[-1]).numpy().astype(np.float32)


def ort_accuracy(onnx_model: bytes, info: ModelInfo, split: Split, threads: int = 1) -> float:
    """Top-1 accuracy on the validation split, one image at a time as the model was exported (batch 1)."""
    sess = make_session(onnx_model, threads=threads)
    x = model_inputs(info, split.val_x)
    name = sess.get_inputs()[0].name
    pred = np.array([sess.run(None, {name: x[i:i + 1]})[0].argmax() for i in range(len(x))])
    return float((pred == split.val_y).mean())
