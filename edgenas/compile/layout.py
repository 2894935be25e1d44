"""NHWC for the whole quantized graph, so that int8 convolutions can use dot-product intrinsics (VNNI, sdot).

`relax.transform.ConvertLayout` carries a layout only through operators with a layout rule. In TVM 0.27
`quantize`, `dequantize` and `clip` have none, so converting a QDQ graph puts a transpose on both sides of
every one of them: 205 transposes in a 41-convolution network. No Python hook registers a layout rule, so we
first write those three operators as the elementwise arithmetic their legalization computes (same rounding,
same order), then convert; only the graph's input and output keep a transpose.
"""

from __future__ import annotations

import numpy as np

QDQ_OPS = ("relax.quantize", "relax.dequantize")


def _scalar(expr):
    """The value of a one-element constant, else None (per-channel parameters stay as they are)."""
    from tvm.ir.expr import Constant

    if isinstance(expr, Constant):
        v = expr.value.numpy()
        return v.reshape(()) if v.size == 1 else None
    return None


def _quantize(x, scale, zero, dtype: str):
    """clip(round(x / scale) + zero, dtype range), cast: relax.quantize's legalization, op by op."""
    from tvm import relax

    info = np.iinfo(dtype)
    f32 = lambda v: relax.const(np.float32(v))  # noqa: E731
    y = relax.op.add(relax.op.round(relax.op.divide(x, f32(scale))), f32(zero))
    return relax.op.astype(relax.op.maximum(relax.op.minimum(y, f32(info.max)), f32(info.min)), dtype)


def _dequantize(q, scale, zero):
    """(int32(q) - zero) * scale in float32: relax.dequantize's legalization, op by op."""
    from tvm import relax

    diff = relax.op.subtract(relax.op.astype(q, "int32"), relax.const(np.int32(zero)))
    return relax.op.multiply(relax.op.astype(diff, "float32"), relax.const(np.float32(scale)))


def elementwise_qdq(mod):
    """Per-tensor quantize/dequantize and every clip as elementwise arithmetic with layout rules."""
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    from edgenas.compile.int8 import rewrite_functions

    def qdq(orig, _m):
        scale, zero = _scalar(orig.args[1]), _scalar(orig.args[2])
        if scale is None or zero is None or str(orig.attrs.out_dtype) not in ("uint8", "int8", "float32"):
            return orig
        if orig.op.name == "relax.quantize":
            return _quantize(orig.args[0], scale, zero, str(orig.attrs.out_dtype))
        return _dequantize(orig.args[0], scale, zero) if str(orig.attrs.out_dtype) == "float32" else orig

    def clip(orig, _m):
        x, lo, hi = orig.args
        dtype = str(x.ty.dtype)
        bound = lambda v: relax.const(np.array(getattr(v.value, "value", v.value), dtype))  # noqa: E731
        return relax.op.minimum(relax.op.maximum(x, bound(lo)), bound(hi))

    rules = [(is_op(name)(wildcard(), wildcard(), wildcard()), qdq) for name in QDQ_OPS]
    rules.append((is_op("relax.clip")(wildcard(), wildcard(), wildcard()), clip))
    return rewrite_functions(mod, rules)


def to_nhwc(mod):
    """Convolutions in NHWC/OHWI with the layout carried through everything between them."""
    from tvm import relax

    mod = elementwise_qdq(mod)
    return relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(mod)
