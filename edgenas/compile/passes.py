"""The graph part of compile as TVM passes, in one `tvm.transform.Sequential` (`compile_pipeline`):

    IntegerQDQ -> ElementwiseQDQ -> AccumulateFloat32 -> [ToNHWC] -> RequantMultiplier
    -> [PadChannels -> [WidenWeights]] -> DecomposeOps -> CanonicalizeBindings -> f_zero_pipeline (TVM's: legalize, fold constants, fuse)

Each rewrite is a pass class with its patterns as attributes, in the manner of TVM's own `relax/transform` files; the
arithmetic they write stays in `int8` and `layout`. `Record`, a pass instrument, times the passes and takes the
analyses the compile reports between them, so the pipeline runs whole. This module imports TVM: import it lazily.
"""

from __future__ import annotations

import time

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from edgenas.compile import int8
from edgenas.compile.layout import QDQ_OPS, clip_as_arithmetic, qdq_as_arithmetic, transposed_constant
from edgenas.compile.schedules import dot_products, exact_weight_bound, padded_input_channels


class _Rules:
    """Each (pattern, rewriter) of `self.rules`, in order, on every Relax function: the one way our rewrites apply.
    As a function pass, the module's other functions and its attributes are kept."""

    rules: list  # set by each pass's __init__

    def transform_function(self, func, _mod, _ctx):
        for pattern, rewriter in self.rules:
            func = rewrite_call(pattern, rewriter, func)
        return func


@relax.transform.function_pass(opt_level=0)
class IntegerQDQ(_Rules):
    """dequantize -> float conv2d/matmul, as TVM imports a QDQ model, into int8 x int8 -> int32 compute (`int8`).
    A call that is not per-tensor uint8/int8 activations with int8 weights stays in float."""

    patterns = staticmethod(int8.patterns)

    def __init__(self):
        p, calls = self.patterns()
        self.rules = [(calls["conv_bias"], int8.conv_rewriter(p, True)), (calls["conv"], int8.conv_rewriter(p, False)),
                      (calls["matmul_bias"], int8.matmul_rewriter(p, True)), (calls["matmul"], int8.matmul_rewriter(p, False))]


@relax.transform.function_pass(opt_level=0)
class ElementwiseQDQ(_Rules):
    """quantize/dequantize/clip as elementwise arithmetic, which has layout rules (see `layout`)."""

    @staticmethod
    def patterns():
        return {name: is_op(name)(wildcard(), wildcard(), wildcard()) for name in (*QDQ_OPS, "relax.clip")}

    def __init__(self):
        calls = self.patterns()
        self.rules = [(calls[name], qdq_as_arithmetic) for name in QDQ_OPS]
        self.rules.append((calls["relax.clip"], clip_as_arithmetic))


@relax.transform.function_pass(opt_level=0)
class TransposeConstants(_Rules):
    """permute_dims of a constant folded into the constant, once, at compile time (`layout.transposed_constant`)."""

    @staticmethod
    def patterns():
        return {"transpose": is_op("relax.permute_dims")(is_const())}

    def __init__(self):
        self.rules = [(self.patterns()["transpose"], transposed_constant)]


@tvm.transform.module_pass(opt_level=0)
class ToNHWC:
    """Convolutions in NHWC/OHWI, where channels are the innermost, vectorised axis, carried through everything
    between them once `ElementwiseQDQ` has run; the weights and scales ConvertLayout transposes, transposed here."""

    layouts = {"relax.nn.conv2d": ["NHWC", "OHWI"]}

    def transform_module(self, mod, _ctx):
        return TransposeConstants()(relax.transform.ConvertLayout(self.layouts)(mod))


@relax.transform.function_pass(opt_level=0)
class RequantMultiplier(_Rules):
    """Requantization as one multiply per element: `x * a / b` with constant a (per channel) and b (the next
    layer's scale) becomes `x * (a / b)`, and any other division by a constant a multiplication by its inverse.

    A vector division costs an order of magnitude more than a multiplication, once per output element of every
    layer. The product can differ from the quotient in the last bit, so an output may round to the neighbouring
    integer: within the one quantization step the exactness check allows.
    """

    @staticmethod
    def patterns():
        x, a, b = wildcard(), is_const(), is_const()
        return {"x": x, "a": a, "b": b,
                "scale_then_divide": is_op("relax.divide")(is_op("relax.multiply")(x, a), b),
                "divide": is_op("relax.divide")(x, b)}

    def __init__(self):
        self.p = self.patterns()
        self.rules = [(self.p["scale_then_divide"], self.fold), (self.p["divide"], self.invert)]

    def fold(self, orig, m):
        a, b = m[self.p["a"]].value.numpy(), m[self.p["b"]].value.numpy()
        if a.dtype != np.float32 or b.dtype != np.float32 or np.any(b == 0):
            return orig
        return relax.op.multiply(m[self.p["x"]], relax.const((a.astype(np.float64) / b).astype(np.float32)))

    def invert(self, orig, m):
        b = m[self.p["b"]].value.numpy()
        if b.dtype != np.float32 or np.any(b == 0):
            return orig
        return relax.op.multiply(m[self.p["x"]], relax.const((1.0 / b.astype(np.float64)).astype(np.float32)))


def _weight_calls():
    """A convolution or a matmul with a constant weight: what PadChannels and WidenWeights rewrite."""
    x, w = wildcard(), is_const()
    return {"x": x, "w": w, "conv": is_op("relax.nn.conv2d")(x, w), "matmul": is_op("relax.matmul")(x, w)}


@relax.transform.function_pass(opt_level=0)
class AccumulateFloat32(_Rules):
    """float16 conv2d/matmul summed in float32 and cast back: a long reduction (a 1x1 convolution over 960 channels)
    summed in float16 loses about three digits. cuDNN sums float16 convolutions in float32 too."""

    @staticmethod
    def patterns():
        return {name: is_op(f"relax.{name}")(wildcard(), wildcard()) for name in ("nn.conv2d", "matmul")}

    def __init__(self):
        self.rules = [(call, self.widen) for call in self.patterns().values()]

    @staticmethod
    def widen(orig, _m):
        if str(orig.ty.dtype) != "float16":
            return orig
        x, w = orig.args
        if orig.op.name == "relax.matmul":
            return relax.op.astype(relax.op.matmul(x, w, out_dtype="float32"), "float16")
        a = orig.attrs
        wide = relax.op.nn.conv2d(x, w, a.strides, a.padding, a.dilation, a.groups, a.data_layout, a.kernel_layout,
                                  a.out_layout, "float32")
        return relax.op.astype(wide, "float16")


@relax.transform.function_pass(opt_level=0)
class PadChannels(_Rules):
    """Integer convolutions and matmuls whose output channels are not a multiple of `multiple`, computed with
    zero weights up to the next multiple and sliced back, so that the dot-product schedule takes them whole
    instead of leaving them to the plain vector schedule. A convolution whose input channels are not a multiple of
    the intrinsic's `depth` (an RGB stem's 3) also reads zero-padded input channels against zero weights, where
    `input_channels` says so: the sums are the same integers, and the dot product applies. Only uint8 x int8 NHWC layers are padded; a matmul only
    when its input features are a multiple of `depth` already."""

    patterns = staticmethod(_weight_calls)

    def __init__(self, multiple: int, depth: int, input_channels=None):
        """`input_channels(k)`: the input channels a convolution with `k` reads (`schedules.padded_input_channels`)."""
        self.multiple, self.depth = multiple, depth
        self.input_channels = input_channels or (lambda k: k)
        self.p = self.patterns()
        self.rules = [(self.p["conv"], self.conv), (self.p["matmul"], self.matmul)]

    def _eligible(self, x, w: np.ndarray, k: int) -> bool:
        return str(x.ty.dtype) == "uint8" and w.dtype == np.int8 and k % self.depth == 0

    @staticmethod
    def _padded(n: int, multiple: int) -> int:
        return -(-n // multiple) * multiple

    def conv(self, orig, m):
        attrs, x, w = orig.attrs, m[self.p["x"]], m[self.p["w"]].value.numpy()
        if attrs.data_layout != "NHWC" or attrs.kernel_layout != "OHWI" or int(attrs.groups) != 1 \
                or str(attrs.out_dtype) != "int32" or w.dtype != np.int8:
            return orig
        out, k = w.shape[0], w.shape[3]
        po, pk = self._padded(out, self.multiple), self.input_channels(k)
        if (po, pk) == (out, k) or str(x.ty.dtype) != "uint8":
            return orig
        padded = np.zeros((po, w.shape[1], w.shape[2], pk), np.int8)
        padded[:out, :, :, :k] = w
        if pk != k:  # zero input channels: against zero weights, any value adds nothing
            x = relax.op.nn.pad(x, [0, 0, 0, 0, 0, 0, 0, pk - k], pad_value=0.0)
        y = relax.op.nn.conv2d(x, relax.const(padded), strides=attrs.strides, padding=attrs.padding,
                               dilation=attrs.dilation, groups=1, data_layout="NHWC", kernel_layout="OHWI",
                               out_dtype="int32")
        return y if po == out else relax.op.strided_slice(y, axes=[3], begin=[0], end=[out])

    def matmul(self, orig, m):
        x, w = m[self.p["x"]], m[self.p["w"]].value.numpy()
        if w.ndim != 2 or str(orig.attrs.out_dtype) != "int32" or not self._eligible(x, w, w.shape[0]) \
                or w.shape[1] % self.multiple == 0:
            return orig
        out = w.shape[1]
        padded = np.zeros((w.shape[0], self._padded(out, self.multiple)), np.int8)
        padded[:, :out] = w
        y = relax.op.matmul(x, relax.const(padded), out_dtype="int32")
        return relax.op.strided_slice(y, axes=[len(x.ty.shape) - 1], begin=[0], end=[out])


@relax.transform.function_pass(opt_level=0)
class WidenWeights(_Rules):
    """The int8 weights of uint8 x int8 convolutions and matmuls as `dtype` (int16) constants, for `vpmaddwd`, which
    multiplies int16 pairs. The values do not change; the widening is done once, at compile time. Weights within
    `keep_within` in magnitude stay int8: the target's int8 dot product (vpmaddubsw) is exact for them, and faster."""

    patterns = staticmethod(_weight_calls)

    def __init__(self, dtype: str, keep_within: int | None = None):
        self.dtype, self.keep_within = dtype, keep_within
        self.p = self.patterns()
        self.rules = [(self.p["conv"], self.widen), (self.p["matmul"], self.widen)]

    def widen(self, orig, m):
        x, w = m[self.p["x"]], m[self.p["w"]].value.numpy()
        grouped = orig.op.name == "relax.nn.conv2d" and int(orig.attrs.groups) != 1
        if grouped or str(x.ty.dtype) != "uint8" or w.dtype != np.int8 or str(orig.attrs.out_dtype) != "int32":
            return orig
        if self.keep_within is not None and np.abs(w.astype(np.int32)).max() <= self.keep_within:
            return orig
        return relax.Call(orig.op, [x, relax.const(w.astype(self.dtype))], orig.attrs)


def compile_pipeline(target, layout: str) -> tvm.transform.Sequential:
    """The graph part of compile for `target` (a `tvm.target.Target`, which must be the current target while it runs:
    `with target:`) in `layout` (NCHW or NHWC). The integer dot product of the target's schedule
    (`schedules.dot_products`, best first) set the channel multiple and the weight type of uint8 layers."""
    passes = [IntegerQDQ(), ElementwiseQDQ(), AccumulateFloat32()]
    if layout == "NHWC":
        passes.append(ToNHWC())
    passes.append(RequantMultiplier())
    dots = dot_products(target)
    if dots and layout == "NHWC":
        passes.append(PadChannels(dots[0].lanes, dots[0].depth, lambda k: padded_input_channels(target, k)))
        if wide := next((d for d in dots if d.weight_dtype != "int8"), None):
            passes.append(WidenWeights(wide.weight_dtype, exact_weight_bound(target)))
    passes += [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
               relax.get_pipeline("zero")]
    return tvm.transform.Sequential(passes, name="edgenas.compile")


def pass_names(pipeline: tvm.transform.Sequential) -> list[str]:
    """The names `Record` keys its timings and analyses by, in the order the passes run."""
    return [p.info.name for p in pipeline.passes]


@tvm.instrument.pass_instrument
class Record:
    """Seconds per pass of the pipeline run under it (time in a pass's nested passes counts as its own), and
    `analyses` of the module where a named pass starts or ends: {key: ("before" | "after", pass name, f(mod))},
    their results in `results[key]`. Nothing else is done per pass, so it costs next to nothing."""

    def __init__(self, analyses: dict | None = None):
        self.analyses = dict(analyses or {})
        self.results: dict = {}
        self.seconds: dict[str, float] = {}
        self._started: list[float] = []

    def _analyse(self, when: str, mod, info) -> None:
        for key, (at, name, analysis) in self.analyses.items():
            if at == when and name == info.name:
                self.results[key] = analysis(mod)

    def run_before_pass(self, mod, info):
        self._analyse("before", mod, info)
        self._started.append(time.perf_counter())

    def run_after_pass(self, mod, info):
        seconds = time.perf_counter() - self._started.pop()
        if len(self._started) == 1:  # a pass of the pipeline, not the pipeline itself nor a pass nested in one
            self.seconds[info.name] = self.seconds.get(info.name, 0.0) + seconds
        self._analyse("after", mod, info)
