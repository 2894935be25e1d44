"""`edgenas quantize`: static int8 (ONNX QDQ) with ONNX Runtime's quantizer, behind an accuracy gate.

The gate measures the int8 model with the runtime that will run it (`accuracy.Evaluator`): the TVM library for
`--backend tvm`, ONNX Runtime for `--backend ort`. When int8 loses more than `max_drop` points of validation accuracy,
the known remedies are tried in order: for ONNX Runtime on x86, 7-bit weights (`reduce_range`, its documented remedy
for CPUs without VNNI); the other calibration methods; then leaving the most sensitive layers in float (ranked by the
signal-to-quantization-noise ratio of their outputs, from onnxruntime.quantization.qdq_loss_debug).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgenas.accuracy import Evaluator, bundle_split, model_inputs, ort_accuracy
from edgenas.bundle import load_bundle, resolve, write_bundle
from edgenas.errors import BadInput, EdgenasError, held_warnings, warn
from edgenas.compile.qdq import Reader, pre_process, quantize_qdq, seven_bit_for

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
class Recipe:
    """One way to quantize: what an attempt of the gate tried."""
    method: str
    reduce_range: bool = False  # 7-bit weights
    excluded: tuple[str, ...] = ()  # nodes left in float

    def remedy(self, first: "Recipe") -> str:
        if self == first:
            return "none"
        if self.excluded:
            return f"float layers: {', '.join(self.excluded)}"
        parts = ([f"calibration {self.method}"] if self.method != first.method else []) + \
                ([("reduce_range (7-bit weights)" if self.reduce_range else "8-bit weights")]
                 if self.reduce_range != first.reduce_range else [])
        return ", ".join(parts)


def recipes(cfg: QuantizeConfig, runtime: str, target) -> list[Recipe]:
    """The gate's attempts before any layer is left in float, in order. TVM on x86 without VNNI starts from 7-bit
    weights, which its fastest kernels need (`qdq.seven_bit_for`), and falls back to full-range weights (exact, slower
    kernels); ONNX Runtime on x86 tries 7-bit weights, its documented remedy for CPUs without VNNI, as its first
    remedy."""
    others = [m for m in METHODS if m != cfg.method]
    if runtime in ("tvm", "reference") and target is not None and seven_bit_for(target):
        return [Recipe(cfg.method, True), *[Recipe(m, True) for m in others], Recipe(cfg.method)]
    x86_ort = runtime == "ort" and target is not None and target.arch == "x86_64" and target.device == "cpu"
    return [Recipe(cfg.method), *([Recipe(cfg.method, True)] if x86_ort else []), *[Recipe(m) for m in others]]


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
    #: who measured the int8 attempts: the runtime that ships (`accuracy.Evaluator.describe()`)
    evaluated_with: dict = field(default_factory=dict)
    reduce_range: bool = False  # the kept attempt's weights are 7-bit

    def to_dict(self) -> dict:
        return asdict(self)


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


class GateFailed(EdgenasError):
    """int8 lost more than --max-drop after every remedy: a build that may choose its precision ships fp32."""


def quantize(model: Path, out: Path, cfg: QuantizeConfig = QuantizeConfig(), threads: int = 1,
             judge: Evaluator | None = None) -> QuantizeReport:
    """`judge` measures the int8 attempts (default: the exact reference, the QDQ model in float); the fp32 model is
    measured in float. The error names --max-drop, which `quantize` and `build` both take."""
    if cfg.method not in METHODS:
        raise BadInput(f"--method {cfg.method}: known calibration methods are {', '.join(METHODS)}")
    if cfg.calibration < 1:
        raise BadInput(f"--calibration {cfg.calibration}: needs at least 1 image")
    judge = judge or Evaluator("reference", threads=threads)
    start = time.perf_counter()
    onnx_path, _ = resolve(model)
    data, info = load_bundle(model)
    split = bundle_split(info, str(onnx_path))
    fp32 = ort_accuracy(data, info, split, threads)  # measured, not read from model.json: the file may have changed
    reader = Reader(info.input_name, model_inputs(info, split.train_x[: cfg.calibration]))
    attempts: list[tuple[float, Recipe, bytes]] = []
    said: list[list[str]] = []  # each attempt's warnings, held back: only the kept attempt's are printed

    def attempt(work: Path, r: Recipe) -> bool:
        with held_warnings() as held:
            q = quantize_qdq(work / "pre.onnx", work / "int8.onnx", reader, r.method, cfg.symmetric, list(r.excluded),
                             r.reduce_range)
            attempts.append((judge.accuracy(q, info, split), r, q))
        said.append(held)
        return (fp32 - attempts[-1][0]) * 100 <= cfg.max_drop

    tries = recipes(cfg, judge.runtime, judge.target)
    with tempfile.TemporaryDirectory(prefix="edgenas-quantize-") as tmp:
        work = Path(tmp)
        pre_process(work, data)
        passed = any(attempt(work, r) for r in tries)
        if not passed:
            _, best, best_model = max(attempts, key=lambda a: a[0])
            (work / "base.onnx").write_bytes(best_model)
            ranked = sensitive_nodes(work / "pre.onnx", work / "base.onnx", reader, work)
            passed = any(attempt(work, Recipe(best.method, best.reduce_range,
                                              tuple(dict.fromkeys(n for g in ranked[:k] for n in g))))
                         for k in EXCLUDE_STEPS if k <= len(ranked))
    chosen = attempts[-1] if passed else max(attempts, key=lambda a: a[0])
    for message in dict.fromkeys(said[attempts.index(chosen)] if passed else []):  # a failed gate: its one line says it
        warn(message)
    acc, recipe, q = chosen
    report = QuantizeReport(
        fp32, acc, round((fp32 - acc) * 100, 3), passed, recipe.remedy(tries[0]), recipe.method, list(recipe.excluded),
        [{"method": r.method, "reduce_range": r.reduce_range, "excluded": list(r.excluded), "int8_accuracy": a,
          "drop_points": round((fp32 - a) * 100, 3)} for a, r, _ in attempts],
        len(reader.x), cfg.symmetric, round(time.perf_counter() - start, 2), str(out), judge.describe(),
        recipe.reduce_range,
    )
    write_bundle(out, q, info.then("quantize", accuracy={**info.accuracy, "fp32": fp32, "int8": acc},
                                   record={"source": str(onnx_path.resolve()), **cfg.__dict__,
                                           **{k: v for k, v in report.to_dict().items() if k != "out_dir"}}))
    if not passed:
        raise GateFailed(f"int8 loses {report.drop_points:.2f} points (fp32 {fp32:.4f}, int8 {acc:.4f} on "
                           f"{judge.runtime}), more than --max-drop {cfg.max_drop:g} after every remedy ({len(attempts)} "
                           f"tried); the most accurate attempt is kept in {out} for inspection")
    return report
