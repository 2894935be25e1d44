"""Export torch modules to in-memory ONNX graphs with the same settings everywhere."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from edgenas.compile.qdq import quantize_for_latency, quantized_boundaries, seven_bit_for, symmetric_for

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def to_onnx(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """Serialise `module` in eval mode (BatchNorm folded into convolutions) for a fixed input shape."""
    module = module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated but is much faster per block than the dynamo
        # exporter (a profile exports hundreds) and needs no onnxscript; its graphs import cleanly into ORT and TVM.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.zeros(input_shape),), buf, dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
        )
    return buf.getvalue()


def shipped_onnx(model: bytes, input_shape: tuple[int, ...], precision: str, target, block: bool = False) -> bytes:
    """The graph a build ships for the fp32 `model` at `precision`: quantized as `quantize` does it for int8 (with
    the weights' range TVM's kernels of the target want).
    What latency tables, validation, the search and pruning measure, so that a prediction is of what ships. A `block`
    (a unit of a network, for a table) takes and gives quantized tensors, as it runs inside an int8 network."""
    if precision == "fp32":
        return model
    q = quantize_for_latency(model, input_shape, symmetric_for(target), reduce_range=seven_bit_for(target))
    return quantized_boundaries(q) if block else q


def as_shipped(module: nn.Module, input_shape: tuple[int, ...], precision: str, target, block: bool = False) -> bytes:
    return shipped_onnx(to_onnx(module, input_shape), input_shape, precision, target, block)
