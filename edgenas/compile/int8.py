"""Integer convolutions and matmuls for QDQ models in TVM Relax.

TVM 0.27 imports an ONNX QDQ model as quantize -> dequantize -> *float* conv2d, and nothing in the wheel
turns that back into integer arithmetic, so a QDQ model compiled by TVM computes in float32. This pass is
ours because no library does it for Relax. It rewrites

    conv2d(dequantize(xq, sx, zx), dequantize(Wq, sw, 0)) [+ reshape(dequantize(Bq, sx*sw, 0))]

into an int8 x int8 -> int32 convolution with the bias added in int32, followed by the requantization
scale `sx * sw` (per output channel), which TVM fuses with the next layer's quantize:

    (conv2d(pad(xq, zx), Wq, int32) - zx * sum(Wq) + Bq) * (sx * sw)

Padding with the zero point makes the padded border equal to a real 0.0, so the zero-point term is one
constant per output channel (the padding is a concat, so that an NHWC conversion passes through it).
The same goes for matmul(dequantize(x), permute_dims(dequantize(W))) (Gemm).
"""

from __future__ import annotations

import numpy as np

BIAS_SCALE_RTOL = 1e-5
COMPUTE_OPS = ("relax.nn.conv2d", "relax.matmul")


def _np(expr) -> np.ndarray:
    return expr.value.numpy()


def _bias_int32(bias, sx: float, sw: np.ndarray, channels: int):
    """Bq if it is int32 on the scale sx*sw with zero point 0 (ONNX Runtime's convention), else None."""
    if bias is None:
        return np.zeros(channels, np.int64)
    bq, sb, zb = (_np(e) for e in bias)
    if bq.dtype != np.int32 or np.any(zb != 0):
        return None
    expected = np.broadcast_to(np.float64(sx) * sw.astype(np.float64), (channels,))
    if not np.allclose(np.broadcast_to(sb, (channels,)), expected, rtol=BIAS_SCALE_RTOL, atol=0):
        return None
    return bq.astype(np.int64).reshape(channels)


def _requantize(acc, bias, sx: float, sw: np.ndarray, zx: int, wsum: np.ndarray, shape: tuple[int, ...]):
    """int32 accumulator -> float: subtract the zero-point term, add the int32 bias, scale per channel."""
    from tvm import relax

    channels = wsum.shape[0]
    bq = _bias_int32(bias, sx, sw, channels)
    fold = -np.int64(zx) * wsum + (bq if bq is not None else 0)
    acc = relax.op.add(acc, relax.const(fold.astype(np.int32).reshape(shape)))
    scale = np.broadcast_to(np.float32(sx) * sw.astype(np.float32), (channels,)).astype(np.float32)
    out = relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale.reshape(shape)))
    if bq is None:  # a bias on another scale: added in float after the scale
        bqf = relax.op.dequantize(*bias, axis=0, out_dtype="float32")
        out = relax.op.add(out, relax.op.reshape(bqf, shape))
    return out


def operand(value, dtype: str, ndim: int):
    """`value` as a one-element tensor of rank `ndim`, not a scalar.

    Legalization inlines scalar constants into the kernel, so every layer's own scale made its own tuning
    task (55 tasks for 55 kernels); as tensors they are arguments, and layers of the same shape share one
    tuned schedule. The rank must match for the layout rules to pass them through.
    """
    from tvm import relax

    return relax.const(np.full((1,) * ndim, value, dtype))


def pad_by_concat(x, pad: list[int], value: int):
    """Pad H and W of an NCHW tensor with `value` by concatenating borders.

    Unlike `nn.pad`, `concat` and the ops that make the borders have layout rules, so ConvertLayout carries
    NHWC through the padding instead of transposing around every padded convolution. The borders are
    computed from slices of `x` (x * 0 + value): concat follows its first input's layout, and a constant
    border would pin it to NCHW.
    """
    from tvm import relax

    dtype = str(x.ty.dtype)
    top, left, bottom, right = pad
    if max(top, bottom) > int(x.ty.shape[2]) or max(left, right) > int(x.ty.shape[3]):  # borders wider than a slice
        return relax.op.nn.pad(x, [0, 0, 0, 0, top, bottom, left, right], pad_value=float(value))

    def border(t, axis: int, size: int):
        edge = relax.op.strided_slice(t, axes=[axis], begin=[0], end=[size])
        return relax.op.add(relax.op.multiply(edge, operand(0, dtype, 4)), operand(value, dtype, 4))

    for axis, before, after in ((2, top, bottom), (3, left, right)):
        if before or after:
            x = relax.op.concat([border(x, axis, before)] * bool(before) + [x] + [border(x, axis, after)] * bool(after), axis)
    return x


def patterns():
    """The sub-patterns a rewriter reads its match through, and the four calls they make, most specific first."""
    from tvm.relax.dpl import is_const, is_op, wildcard

    xq, sx, zx = wildcard(), is_const(), is_const()
    wq, sw, zw = is_const(), is_const(), is_const()
    bq, sb, zb = is_const(), is_const(), is_const()
    x = is_op("relax.dequantize")(xq, sx, zx)
    w = is_op("relax.dequantize")(wq, sw, zw)
    b = is_op("relax.dequantize")(bq, sb, zb)
    conv = is_op("relax.nn.conv2d")(x, w)
    matmul = is_op("relax.matmul")(x, is_op("relax.permute_dims")(w))
    parts = {"xq": xq, "sx": sx, "zx": zx, "wq": wq, "sw": sw, "zw": zw, "bias": (bq, sb, zb), "conv": conv, "matmul": matmul}
    return parts, {
        "conv_bias": is_op("relax.add")(conv, is_op("relax.reshape")(b, wildcard())),
        "conv": conv,
        "matmul_bias": is_op("relax.add")(matmul, b),
        "matmul": matmul,
    }


def _weights(m: dict, p: dict):
    """The integer weight, its per-output-channel scale, and the activation's scale and zero point; None if not int8."""
    wq, zw, zx = _np(m[p["wq"]]), _np(m[p["zw"]]), _np(m[p["zx"]])
    if wq.dtype != np.int8 or np.any(zw != 0) or zx.size != 1 or _np(m[p["sx"]]).size != 1:
        return None
    return wq, _np(m[p["sw"]]).astype(np.float32).reshape(-1), float(_np(m[p["sx"]])), int(zx.reshape(()))


def conv_rewriter(p: dict, with_bias: bool):
    from tvm import relax

    def rewrite(orig, m):
        parsed = _weights(m, p)
        conv = m[p["conv"]]
        attrs = conv.attrs
        if parsed is None or attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW":
            return orig
        wq, sw, sx, zx = parsed
        xq = m[p["xq"]]
        pad = [int(v) for v in attrs.padding]  # top, left, bottom, right
        if zx != 0 and any(pad):
            xq, pad = pad_by_concat(xq, pad, zx), [0, 0, 0, 0]
        acc = relax.op.nn.conv2d(xq, relax.const(wq), strides=attrs.strides, padding=pad, dilation=attrs.dilation,
                                 groups=attrs.groups, data_layout="NCHW", kernel_layout="OIHW", out_dtype="int32")
        wsum = wq.astype(np.int64).reshape(wq.shape[0], -1).sum(axis=1)
        bias = tuple(m[e] for e in p["bias"]) if with_bias else None
        return _requantize(acc, bias, sx, sw, zx, wsum, (1, wq.shape[0], 1, 1))

    return rewrite


def matmul_rewriter(p: dict, with_bias: bool):
    from tvm import relax

    def rewrite(orig, m):
        parsed = _weights(m, p)
        if parsed is None or _np(m[p["wq"]]).ndim != 2:
            return orig
        wq, sw, sx, zx = parsed  # wq: (out, in), per-row scales
        acc = relax.op.matmul(m[p["xq"]], relax.const(np.ascontiguousarray(wq.T)), out_dtype="int32")
        wsum = wq.astype(np.int64).sum(axis=1)
        bias = tuple(m[e] for e in p["bias"]) if with_bias else None
        return _requantize(acc, bias, sx, sw, zx, wsum, (1, wq.shape[0]))

    return rewrite


def _calls(mod):
    from tvm import relax

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            for block in func.body.blocks:
                for b in block.bindings:
                    yield b.var, b.value, getattr(getattr(b.value, "op", None), "name", "")


def compute_ops(mod) -> dict[str, int]:
    """How many conv2d and matmul calls compute in which dtype, e.g. {"relax.nn.conv2d:int32": 31}."""
    from collections import Counter

    return dict(Counter(f"{name}:{var.ty.dtype}" for var, _, name in _calls(mod) if name in COMPUTE_OPS))


def float_ops_on_quantized_path(mod) -> int:
    """Float conv2d and matmul calls that take a dequantized tensor: quantized work left in float."""
    names = {var: name for var, _, name in _calls(mod)}
    return sum(
        1 for var, value, name in _calls(mod)
        if name in COMPUTE_OPS and str(var.ty.dtype).startswith("float")
        and any(names.get(arg) == "relax.dequantize" for arg in value.args)
    )
