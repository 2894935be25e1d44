"""Quantize/dequantize/clip as plain elementwise arithmetic, and NHWC for the whole quantized graph.

Two reasons to write those three operators as the arithmetic their legalization computes (same rounding,
same order) rather than keep them:
- `relax.transform.ConvertLayout` carries a layout only through operators with a layout rule, and in TVM 0.27
  `quantize`, `dequantize` and `clip` have none (no Python hook registers one). Converting a QDQ graph to
  NHWC, which the int8 dot-product intrinsics (VNNI, sdot) need, put a transpose on both sides of each: 205
  transposes in a 41-convolution network. Written out, only the graph's input keeps one.
- Their legalization inlines each layer's scale into the kernel, so no two kernels were the same tuning task.
  Our scales are tensor arguments (`int8.operand`), and layers of the same shape share a tuned schedule.
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


def _rank(x) -> int:
    return len(x.ty.shape)


def _quantize(x, scale, zero, dtype: str):
    """clip(round(x / scale) + zero, dtype range), cast: relax.quantize's legalization, op by op."""
    from tvm import relax

    from edgenas.compile.int8 import operand

    info = np.iinfo(dtype)
    f32 = lambda v: operand(v, "float32", _rank(x))  # noqa: E731
    y = relax.op.add(relax.op.round(relax.op.divide(x, f32(scale))), f32(zero))
    return relax.op.astype(relax.op.maximum(relax.op.minimum(y, f32(info.max)), f32(info.min)), dtype)


def _dequantize(q, scale, zero):
    """(int32(q) - zero) * scale in float32: relax.dequantize's legalization, op by op."""
    from tvm import relax

    from edgenas.compile.int8 import operand

    diff = relax.op.subtract(relax.op.astype(q, "int32"), operand(zero, "int32", _rank(q)))
    return relax.op.multiply(relax.op.astype(diff, "float32"), operand(scale, "float32", _rank(q)))


def qdq_as_arithmetic(orig, _m):
    """A per-tensor quantize or dequantize call as `_quantize` / `_dequantize`; others as they are."""
    scale, zero = _scalar(orig.args[1]), _scalar(orig.args[2])
    if scale is None or zero is None or str(orig.attrs.out_dtype) not in ("uint8", "int8", "float32"):
        return orig
    if orig.op.name == "relax.quantize":
        return _quantize(orig.args[0], scale, zero, str(orig.attrs.out_dtype))
    return _dequantize(orig.args[0], scale, zero) if str(orig.attrs.out_dtype) == "float32" else orig


def clip_as_arithmetic(orig, _m):
    """clip(x, lo, hi) as minimum(maximum(x, lo), hi), whose bounds are tensors of x's rank."""
    from tvm import relax

    from edgenas.compile.int8 import operand

    x, lo, hi = orig.args
    dtype = str(x.ty.dtype)
    bound = lambda v: operand(getattr(v.value, "value", v.value), dtype, _rank(x))  # noqa: E731
    return relax.op.minimum(relax.op.maximum(x, bound(lo)), bound(hi))


def transposed_constant(orig, _m):
    """permute_dims of a constant as the transposed constant.

    ConvertLayout transposes every weight and one-element scale at run time; left to the zero pipeline's
    FoldConstant, each of them (629 on the searched int8 network) is a kernel compiled and run: 15 s of compile."""
    from tvm import relax

    value = orig.args[0].value.numpy()
    axes = None if orig.attrs.axes is None else [int(a) for a in orig.attrs.axes]
    return relax.const(np.transpose(value, axes), str(value.dtype))
