"""`edgenas quantize`: static int8 (ONNX QDQ) with ONNX Runtime's quantizer, behind an accuracy gate.

When int8 loses more than `max_drop` points of validation accuracy, the known remedies are tried in
order: the other calibration methods, then leaving the most sensitive layers in float (ranked by the
signal-to-quantization-noise ratio of their outputs, from onnxruntime.quantization.qdq_loss_debug).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgenas.accuracy import bundle_split, model_inputs, ort_accuracy
from edgenas.bundle import load_bundle, resolve, write_bundle
from edgenas.errors import BadInput, EdgenasError

METHODS = ("minmax", "percentile", "entropy")
#: how many of the most sensitive tensors to leave in float, tried in turn after the calibration methods
EXCLUDE_STEPS = (1, 2, 4, 8)
ACTIVATIONS = {"Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "LeakyRelu"}


@dataclass(frozen=True)
class QuantizeConfig:
    calibration: int = 300  # training images that set the activation ranges
    method: str = "minmax"  # tried first
    #: every zero point 0 and int8 activations, as TensorRT-style consumers (Jetson) require
    symmetric: bool = False
    max_drop: float = 1.0  # accuracy points int8 may lose before a remedy is tried


@dataclass(frozen=True)
class QuantizeReport:
    fp32_accuracy: float
    int8_accuracy: float
    drop_points: float
    passed: bool
    remedy: str  # "none", "calibration <method>", or "float layers: <names>"
    method: str
    excluded: list[str]
    attempts: list[dict] = field(default_factory=list)
    calibration_images: int = 0
    symmetric: bool = False
    seconds: float = 0.0
    out_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


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


def quantize_qdq(pre: Path, out: Path, reader: Reader, method: str, symmetric: bool, exclude: list[str]) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader.rewind()
    with contextlib.redirect_stdout(sys.stderr):  # its calibrators print progress; stdout is for --json
        quantize_static(
            str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            nodes_to_exclude=exclude,
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


def quantize_for_latency(onnx_model: bytes, input_shape: tuple[int, ...], symmetric: bool, samples: int = 4) -> bytes:
    """`onnx_model` quantized as `quantize` does it (same pre-processing, format and types), calibrated on random
    inputs: for latency tables, where only the graph the runtime executes matters, not the ranges."""
    import onnx

    name = onnx.load_from_string(onnx_model).graph.input[0].name
    x = np.random.default_rng(0).standard_normal((samples, *input_shape[1:])).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgenas-quantize-") as tmp:
        work = Path(tmp)
        return quantize_qdq(pre_process(work, onnx_model), work / "int8.onnx", Reader(name, x), "minmax", symmetric, [])


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


def sensitive_nodes(pre: Path, qdq: Path, reader: Reader, work: Path) -> list[list[str]]:
    """Per quantized tensor, worst first by signal-to-quantization-noise ratio: the nodes to leave in float
    so that it stays float (its producer, back through activations to the compute node, and its consumers)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    aug = work / "augmented.onnx"
    dbg.modify_model_output_intermediate_tensors(str(qdq), str(aug))
    reader.rewind()
    matches = dbg.create_activation_matching(dbg.collect_activations(str(aug), reader))
    # compute_activation_error would raise KeyError('float') without the float model's activations (ORT 1.32)
    sqnr = {t: dbg.compute_signal_to_quantization_noice_ratio(m["pre_qdq"], m["post_qdq"]) for t, m in matches.items()}
    nodes = onnx.load(str(pre)).graph.node
    producer = {out: n for n in nodes for out in n.output}
    groups = []
    for _, tensor in sorted((err, t) for t, err in sqnr.items() if t in producer):
        group, node = [], producer[tensor]
        while True:  # back through elementwise activations to the node that computes the tensor
            group.append(node.name)
            if node.op_type not in ACTIVATIONS or node.input[0] not in producer:
                break
            node = producer[node.input[0]]
        groups.append(group + [n.name for n in nodes if tensor in n.input])
    return groups


def quantize(model: Path, out: Path, cfg: QuantizeConfig = QuantizeConfig(), threads: int = 1) -> QuantizeReport:
    if cfg.method not in METHODS:
        raise BadInput(f"--method {cfg.method}: known calibration methods are {', '.join(METHODS)}")
    if cfg.calibration < 1:
        raise BadInput(f"--calibration {cfg.calibration}: needs at least 1 image")
    start = time.perf_counter()
    onnx_path, _ = resolve(model)
    data, info = load_bundle(model)
    split = bundle_split(info, str(onnx_path))
    fp32 = ort_accuracy(data, info, split, threads)  # measured, not read from model.json: the file may have changed
    reader = Reader(info.input_name, model_inputs(info, split.train_x[: cfg.calibration]))
    attempts: list[tuple[float, str, list[str], bytes]] = []

    def attempt(work: Path, method: str, exclude: list[str]) -> bool:
        q = quantize_qdq(work / "pre.onnx", work / "int8.onnx", reader, method, cfg.symmetric, exclude)
        attempts.append((ort_accuracy(q, info, split, threads), method, exclude, q))
        return (fp32 - attempts[-1][0]) * 100 <= cfg.max_drop

    with tempfile.TemporaryDirectory(prefix="edgenas-quantize-") as tmp:
        work = Path(tmp)
        pre_process(work, data)
        passed = any(attempt(work, m, []) for m in (cfg.method, *[m for m in METHODS if m != cfg.method]))
        if not passed:
            _, best_method, _, best_model = max(attempts, key=lambda a: a[0])
            (work / "base.onnx").write_bytes(best_model)
            ranked = sensitive_nodes(work / "pre.onnx", work / "base.onnx", reader, work)
            passed = any(attempt(work, best_method, list(dict.fromkeys(n for g in ranked[:k] for n in g)))
                         for k in EXCLUDE_STEPS if k <= len(ranked))
    chosen = attempts[-1] if passed else max(attempts, key=lambda a: a[0])
    acc, method, excluded, q = chosen
    remedy = ("none" if chosen is attempts[0] else f"float layers: {', '.join(excluded)}" if excluded
              else f"calibration {method}")
    report = QuantizeReport(
        fp32, acc, round((fp32 - acc) * 100, 3), passed, remedy, method, excluded,
        [{"method": m, "excluded": e, "int8_accuracy": a, "drop_points": round((fp32 - a) * 100, 3)} for a, m, e, _ in attempts],
        len(reader.x), cfg.symmetric, round(time.perf_counter() - start, 2), str(out),
    )
    write_bundle(out, q, info.then("quantize", accuracy={**info.accuracy, "fp32": fp32, "int8": acc},
                                   record={"source": str(onnx_path.resolve()), **cfg.__dict__,
                                           **{k: v for k, v in report.to_dict().items() if k != "out_dir"}}))
    if not passed:
        raise EdgenasError(f"int8 loses {report.drop_points:.2f} points (fp32 {fp32:.4f}, int8 {acc:.4f}), more than "
                           f"--max-drop {cfg.max_drop:g} after every remedy ({len(attempts)} tried); the most accurate "
                           f"attempt is kept in {out} for inspection")
    return report
