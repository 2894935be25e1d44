"""Any ONNX model into Relax, or a one-line error naming the file, input or operator that stops it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from edgenas.errors import BadInput, one_line


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: tuple[int, ...]
    dtype: str


def parse_onnx(data: bytes, where: str):
    import onnx

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf DecodeError, onnx ValidationError: both mean a file we cannot use
        raise BadInput(f"{where}: not a valid ONNX model ({one_line(e)})") from None
    return model


def _dtype(elem_type: int) -> str:
    import onnx

    return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def fix_input(model, where: str, shape: tuple[int, ...] | None = None) -> ModelInput:
    """The model's single input with a static shape: `shape` if given, else a symbolic batch becomes 1."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise BadInput(f"{where}: the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                       f"edgenas compiles single-input models")
    inp = inputs[0]
    dims = inp.type.tensor_type.shape.dim
    if shape is not None:
        if len(shape) != len(dims):
            raise BadInput(f"--input-shape {','.join(map(str, shape))}: input '{inp.name}' of {where} has {len(dims)} dimensions")
        resolved = shape
    else:
        resolved = []
        for axis, d in enumerate(dims):
            if d.dim_value > 0:
                resolved.append(d.dim_value)
            elif axis == 0:
                resolved.append(1)
            else:
                raise BadInput(f"{where}: input '{inp.name}' has a dynamic dimension '{d.dim_param or '?'}' at axis {axis}; "
                               f"give --input-shape with every dimension")
    for d, v in zip(dims, resolved):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    return ModelInput(inp.name, tuple(int(v) for v in resolved), _dtype(inp.type.tensor_type.elem_type))


def check_operators(model, where: str) -> None:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    supported = _get_convert_map()
    missing = sorted({n.op_type for n in model.graph.node if n.op_type not in supported})
    if missing:
        node = next(n for n in model.graph.node if n.op_type in missing)
        hint = ("; quantize in QDQ format instead (`edgenas quantize`)" if {"QLinearConv", "QLinearMatMul", "ConvInteger"} & set(missing)
                else "")
        raise BadInput(f"{where}: operator {', '.join(missing)} (first at node '{node.name or node.output[0]}') is not "
                       f"supported by TVM's ONNX importer{hint}")


def to_relax(data: bytes, where: str, shape: tuple[int, ...] | None = None):
    """The Relax module, with weights as constants, and the model's input after fixing its shape."""
    from tvm.relax.frontend.onnx import from_onnx

    model = parse_onnx(data, where)
    inp = fix_input(model, where, shape)
    check_operators(model, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Renaming name input.1 to input_1" and the like
            mod = from_onnx(model, shape_dict={inp.name: list(inp.shape)}, keep_params_in_input=False)
    except Exception as e:  # the importer raises ValueError, NotImplementedError, TVMError...
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise BadInput(f"{where}: TVM cannot import the model ({lines[-1] if lines else type(e).__name__})") from None
    return mod, inp
