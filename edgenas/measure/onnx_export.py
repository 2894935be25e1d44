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


def topologically_sorted(graph) -> None:
    """`graph`'s nodes put in an order where each comes after the nodes it reads, in place. ONNX Runtime's fp16
    converter inserts the casts of a graph's inputs after the nodes that read them, which ONNX's checker (and TVM's
    importer, which calls it) refuses."""
    made = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    left, ordered = list(graph.node), []
    while left:
        ready = [n for n in left if all(i in made for i in n.input)]
        if not ready:
            raise ValueError(f"graph '{graph.name}' has a cycle or reads a tensor nothing makes")
        for n in ready:
            ordered.append(n)
            made.update(n.output)
        left = [n for n in left if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def to_float16(model: bytes, block: bool = False) -> bytes:
    """`model` with its weights and activations in float16, for GPUs: ONNX Runtime's converter, the same file every
    runtime reads. A whole network keeps float32 inputs and outputs (cast on the device); a `block`, a unit of such
    a network, takes and gives float16, as it runs inside it. Convolutions still sum in float32 where TVM compiles
    them (`passes.AccumulateFloat32`), as cuDNN's do."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the model has no value_info for ..." and friends
        converted = convert_float_to_float16(onnx.load_from_string(model), keep_io_types=not block)
    topologically_sorted(converted.graph)
    return converted.SerializeToString()


def shipped_onnx(model: bytes, input_shape: tuple[int, ...], precision: str, target, block: bool = False) -> bytes:
    """The graph a build ships for the fp32 `model` at `precision`: quantized as `quantize` does it for int8 (with
    the weights' range TVM's kernels of the target want), or in float16 (`to_float16`, GPU targets).
    What latency tables, validation, the search and pruning measure, so that a prediction is of what ships. A `block`
    (a unit of a network, for a table) takes and gives quantized tensors, as it runs inside an int8 network."""
    if precision == "fp32":
        return model
    if precision == "fp16":
        return to_float16(model, block)
    q = quantize_for_latency(model, input_shape, symmetric_for(target), reduce_range=seven_bit_for(target))
    return quantized_boundaries(q) if block else q


def as_shipped(module: nn.Module, input_shape: tuple[int, ...], precision: str, target, block: bool = False) -> bytes:
    return shipped_onnx(to_onnx(module, input_shape), input_shape, precision, target, block)
