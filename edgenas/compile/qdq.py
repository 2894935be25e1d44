"""The int8 (ONNX QDQ) recipe, with ONNX Runtime's quantizer: what `quantize` ships and what latency tables measure,
kept apart from both so that measuring does not import the compression stages."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


class Reader:
    """onnxruntime's CalibrationDataReader protocol over an array, one image per call; rewindable."""

    def __init__(self, name: str, x: np.ndarray):
        self.name, self.x, self.i = name, x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0

    def __iter__(self):  # qdq_loss_debug.collect_activations iterates instead
        return ({self.name: self.x[i:i + 1]} for i in range(len(self.x)))


def _quiet():
    """ONNX Runtime's calibrators print dozens of progress lines ("Finding optimal threshold ..."): kept off the
    terminal unless EDGENAS_DEBUG asks for them (then on stderr: stdout is for --json)."""
    if os.environ.get("EDGENAS_DEBUG"):
        return contextlib.redirect_stdout(sys.stderr)
    stack = contextlib.ExitStack()
    sink = stack.enter_context(io.StringIO())
    stack.enter_context(contextlib.redirect_stdout(sink))
    stack.enter_context(contextlib.redirect_stderr(sink))
    return stack


def quantize_qdq(pre: Path, out: Path, reader: Reader, method: str, symmetric: bool, exclude: list[str],
                 reduce_range: bool = False) -> bytes:
    """`reduce_range`: 7-bit weights, ONNX Runtime's documented remedy for x86 CPUs without VNNI, whose uint8 x int8
    kernels saturate 16-bit pair sums of full-range products."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader.rewind()
    with _quiet():
        quantize_static(
            str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            nodes_to_exclude=exclude, reduce_range=reduce_range,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
    return out.read_bytes()


def pre_process(work: Path, onnx_model: bytes) -> Path:
    """ONNX Runtime's pre-processing (shape inference, graph optimisation) before quantization: work/pre.onnx."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    (work / "fp32.onnx").write_bytes(onnx_model)
    quant_pre_process(str(work / "fp32.onnx"), str(work / "pre.onnx"), skip_symbolic_shape=True)
    return work / "pre.onnx"


def symmetric_for(target) -> bool:
    """Zero points all 0 and int8 activations for CUDA targets, whose int8 kernels (TensorRT-style) require them."""
    return target.device == "cuda"


def seven_bit_for(target) -> bool:
    """7-bit weights (reduce_range) for TVM on x86 CPUs without VNNI: their fastest int8 kernel, vpmaddubsw, is exact
    only when weights stay within 64 in magnitude (`schedules.exact_weight_bound`); full-range weights take the
    slower vpmaddwd on widened weights."""
    from edgenas.compile.schedules import exact_weight_bound
    from edgenas.compile.tune import compile_target

    return exact_weight_bound(compile_target(target)) is not None


def quantize_for_latency(onnx_model: bytes, input_shape: tuple[int, ...], symmetric: bool, samples: int = 4,
                         reduce_range: bool = False) -> bytes:
    """`onnx_model` quantized as `quantize` does it (same pre-processing, format and types), calibrated on random
    inputs: for latency tables, where only the graph the runtime executes matters, not the ranges."""
    import onnx

    name = onnx.load_from_string(onnx_model).graph.input[0].name
    x = np.random.default_rng(0).standard_normal((samples, *input_shape[1:])).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgenas-quantize-") as tmp:
        work = Path(tmp)
        return quantize_qdq(pre_process(work, onnx_model), work / "int8.onnx", Reader(name, x), "minmax", symmetric, [],
                            reduce_range)


def quantized_boundaries(onnx_model: bytes) -> bytes:
    """A QDQ graph that takes and gives quantized tensors: its input's QuantizeLinear and its output's DequantizeLinear
    removed. Inside an int8 network, tensors stay quantized from one block to the next; a standalone block would
    otherwise pay a quantization of its input and a dequantization of its output, in proportion to their size, that
    the network never runs. A side that is not quantized stays as it is."""
    import onnx

    model = onnx.load_from_string(onnx_model)
    g = model.graph
    inp, out = g.input[0], g.output[0]
    consumers = [n for n in g.node if inp.name in n.input]
    if len(consumers) == 1 and consumers[0].op_type == "QuantizeLinear":
        q = consumers[0]
        dtype = _zero_point_type(g, q)
        g.node.remove(q)
        g.input.remove(inp)
        g.input.insert(0, onnx.helper.make_tensor_value_info(q.output[0], dtype, [d.dim_value for d in inp.type.tensor_type.shape.dim]))
    producer = next((n for n in g.node if out.name in n.output), None)
    if producer is not None and producer.op_type == "DequantizeLinear":
        q_out = producer.input[0]
        q = next((n for n in g.node if q_out in n.output and n.op_type == "QuantizeLinear"), None)
        if q is not None and not any(q_out in n.input for n in g.node if n is not producer):
            g.node.remove(producer)
            g.output.remove(out)
            g.output.insert(0, onnx.helper.make_tensor_value_info(q_out, _zero_point_type(g, q),
                                                                  [d.dim_value for d in out.type.tensor_type.shape.dim]))
    return model.SerializeToString()


def _zero_point_type(graph, quantize_node) -> int:
    """The element type a QuantizeLinear produces: its zero point's."""
    import onnx

    if len(quantize_node.input) > 2:
        init = next((i for i in graph.initializer if i.name == quantize_node.input[2]), None)
        if init is not None:
            return init.data_type
    return onnx.TensorProto.UINT8
