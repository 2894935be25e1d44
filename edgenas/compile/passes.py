"""The Relax passes that turn an imported QDQ model into the graph our CPU schedules compile well.

Each rewrite is a pass with its patterns as attributes, in the manner of TVM's own `relax/transform` files, and
`lowering(target, layout)` composes them in one `tvm.transform.Sequential`:

    IntegerQDQ -> ElementwiseQDQ -> [ToNHWC] -> RequantMultiplier -> [PadChannels -> [WidenWeights]]
"""

from __future__ import annotations

import numpy as np



def _function_pass(name: str, rewrite):
    """A Relax function pass that applies `rewrite(func) -> func` to every Relax function of the module."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def run(mod, _ctx):
        out = tvm.IRModule()
        for gv, func in mod.functions.items():
            out[gv] = rewrite(func) if isinstance(func, relax.Function) else func
        return relax.transform.Normalize()(out)

    return run


def IntegerQDQ():  # noqa: N802 - named as TVM names its passes
    """dequantize -> float conv2d/matmul, as TVM imports a QDQ model, into int8 x int8 -> int32 compute."""
    import tvm

    from edgenas.compile.int8 import float_ops_on_quantized_path, integer_qdq
    from edgenas.errors import warn

    def run(mod, _ctx):
        mod = integer_qdq(mod)
        left = float_ops_on_quantized_path(mod)
        if left:
            warn(f"{left} quantized convolution(s) or matmul(s) have no integer form (not per-tensor uint8/int8 "
                 f"activations with int8 weights) and compute in float")
        return mod

    return tvm.transform.module_pass(run, opt_level=0, name="IntegerQDQ")


def ElementwiseQDQ():  # noqa: N802
    """quantize/dequantize/clip as elementwise arithmetic, which has layout rules (see `layout`)."""
    import tvm

    from edgenas.compile.layout import elementwise_qdq

    return tvm.transform.module_pass(lambda mod, _ctx: elementwise_qdq(mod), opt_level=0, name="ElementwiseQDQ")


def ToNHWC():  # noqa: N802
    """Convolutions in NHWC/OHWI, where channels are the innermost, vectorised axis."""
    import tvm

    from edgenas.compile.layout import to_nhwc

    return tvm.transform.module_pass(lambda mod, _ctx: to_nhwc(mod), opt_level=0, name="ToNHWC")


class RequantMultiplier:
    """Requantization as one multiply per element: `x * a / b` with constant a (per channel) and b (the next
    layer's scale) becomes `x * (a / b)`, and any other division by a constant a multiplication by its inverse.

    A vector division costs an order of magnitude more than a multiplication, once per output element of every
    layer. The product can differ from the quotient in the last bit, so an output may round to the neighbouring
    integer: within the one quantization step the exactness check allows.
    """

    @staticmethod
    def patterns():
        from tvm.relax.dpl import is_const, is_op, wildcard

        x, a, b = wildcard(), is_const(), is_const()
        return {"x": x, "a": a, "b": b,
                "scale_then_divide": is_op("relax.divide")(is_op("relax.multiply")(x, a), b),
                "divide": is_op("relax.divide")(x, b)}

    def __new__(cls):
        from tvm import relax
        from tvm.relax.dpl import rewrite_call

        p = cls.patterns()

        def fold(orig, m):
            a, b = m[p["a"]].value.numpy(), m[p["b"]].value.numpy()
            if a.dtype != np.float32 or b.dtype != np.float32 or np.any(b == 0):
                return orig
            return relax.op.multiply(m[p["x"]], relax.const((a.astype(np.float64) / b).astype(np.float32)))

        def invert(orig, m):
            b = m[p["b"]].value.numpy()
            if b.dtype != np.float32 or np.any(b == 0):
                return orig
            return relax.op.multiply(m[p["x"]], relax.const((1.0 / b.astype(np.float64)).astype(np.float32)))

        def rewrite(func):
            func = rewrite_call(p["scale_then_divide"], fold, func)
            return rewrite_call(p["divide"], invert, func)

        return _function_pass("RequantMultiplier", rewrite)


class PadChannels:
    """Integer convolutions and matmuls whose output channels are not a multiple of `multiple`, computed with
    zero weights up to the next multiple and sliced back, so that the dot-product schedule takes them whole
    instead of leaving them to the plain vector schedule. Only uint8 x int8 NHWC layers whose input channels
    the intrinsic can take (a multiple of `depth`) are padded."""

    @staticmethod
    def patterns():
        from tvm.relax.dpl import is_const, is_op, wildcard

        x, w = wildcard(), is_const()
        return {"x": x, "w": w, "conv": is_op("relax.nn.conv2d")(x, w), "matmul": is_op("relax.matmul")(x, w)}

    def __new__(cls, multiple: int, depth: int):
        from tvm import relax
        from tvm.relax.dpl import rewrite_call

        p = cls.patterns()

        def eligible(x, w: np.ndarray, k: int) -> bool:
            return str(x.ty.dtype) == "uint8" and w.dtype == np.int8 and k % depth == 0

        def conv(orig, m):
            attrs, x, w = orig.attrs, m[p["x"]], m[p["w"]].value.numpy()
            if (attrs.data_layout != "NHWC" or attrs.kernel_layout != "OHWI" or int(attrs.groups) != 1
                    or str(attrs.out_dtype) != "int32" or not eligible(x, w, w.shape[3]) or w.shape[0] % multiple == 0):
                return orig
            out = w.shape[0]
            padded = np.zeros((-(-out // multiple) * multiple, *w.shape[1:]), np.int8)
            padded[:out] = w
            y = relax.op.nn.conv2d(x, relax.const(padded), strides=attrs.strides, padding=attrs.padding,
                                   dilation=attrs.dilation, groups=1, data_layout="NHWC", kernel_layout="OHWI",
                                   out_dtype="int32")
            return relax.op.strided_slice(y, axes=[3], begin=[0], end=[out])

        def matmul(orig, m):
            x, w = m[p["x"]], m[p["w"]].value.numpy()
            if w.ndim != 2 or str(orig.attrs.out_dtype) != "int32" or not eligible(x, w, w.shape[0]) \
                    or w.shape[1] % multiple == 0:
                return orig
            out = w.shape[1]
            padded = np.zeros((w.shape[0], -(-out // multiple) * multiple), np.int8)
            padded[:, :out] = w
            y = relax.op.matmul(x, relax.const(padded), out_dtype="int32")
            return relax.op.strided_slice(y, axes=[len(x.ty.shape) - 1], begin=[0], end=[out])

        def rewrite(func):
            return rewrite_call(p["matmul"], matmul, rewrite_call(p["conv"], conv, func))

        return _function_pass("PadChannels", rewrite)


class WidenWeights:
    """The int8 weights of uint8 x int8 convolutions and matmuls as int16 constants, for `vpmaddwd`, which
    multiplies int16 pairs. The values do not change; the widening is done once, at compile time."""

    patterns = PadChannels.patterns  # the same calls: a convolution or matmul with a constant weight

    def __new__(cls, dtype: str):
        from tvm import relax
        from tvm.relax.dpl import rewrite_call

        p = cls.patterns()

        def widen(orig, m):
            x, w = m[p["x"]], m[p["w"]].value.numpy()
            grouped = orig.op.name == "relax.nn.conv2d" and int(orig.attrs.groups) != 1
            if grouped or str(x.ty.dtype) != "uint8" or w.dtype != np.int8 or str(orig.attrs.out_dtype) != "int32":
                return orig
            return relax.Call(orig.op, [x, relax.const(w.astype(dtype))], orig.attrs)

        def rewrite(func):
            return rewrite_call(p["matmul"], widen, rewrite_call(p["conv"], widen, func))

        return _function_pass("WidenWeights", rewrite)


def lowering(layout: str, dot=None):
    """The graph rewrites, in order. `dot` (schedules.DotProduct): the integer dot product the target's schedule
    multiplies uint8 layers through, whose channel multiple and weight type the layers are given."""
    import tvm

    dot_passes = []
    if dot is not None and layout == "NHWC":
        dot_passes = [PadChannels(dot.lanes, dot.depth), *([WidenWeights(dot.weight_dtype)] if dot.weight_dtype != "int8" else [])]
    return tvm.transform.Sequential([
        IntegerQDQ(), ElementwiseQDQ(), *([ToNHWC()] if layout == "NHWC" else []), RequantMultiplier(), *dot_passes,
    ], name="edgenas.lowering")
