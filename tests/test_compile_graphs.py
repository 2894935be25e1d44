"""Several graphs in one library, as tables are measured: each function computes what its graph compiled alone
computes, and each is timed."""

import numpy as np
import tvm
from tvm import relax

from conftest import TINY_SPACE
from edgenas.compile.build import compile_onnx_graphs, compile_onnx_model, graph_function
from edgenas.measure.batch import GraphJob
from edgenas.measure.timing import MeasureConfig
from edgenas.measure.tvm import time_functions
from edgenas.space import get_space
from edgenas.targets import get_target


def _run(executable, function, x):
    return relax.VirtualMachine(executable, tvm.cpu())[function](tvm.runtime.tensor(x)).numpy()


def test_graphs_in_one_library_compute_what_each_computes_alone_and_are_each_timed():
    space, target = get_space(TINY_SPACE), get_target("host")
    layers = [layer for layer in space.all_layers() if layer.kind == "mbconv"][:3]
    graphs = [GraphJob(space, layer=layer, seed=i).onnx("int8", target) for i, layer in enumerate(layers)]
    executable, inputs = compile_onnx_graphs(graphs, target)
    assert [tuple(i.shape) for i in inputs] == [tuple(layer.input_shape) for layer in layers]
    rng = np.random.default_rng(0)
    for i, (data, inp) in enumerate(zip(graphs, inputs)):
        x = rng.integers(0, 255, size=inp.shape).astype(inp.dtype)
        alone = compile_onnx_model(data, f"block {i}", target)
        np.testing.assert_array_equal(_run(executable, graph_function(i), x), _run(alone.executable, "main", x))

    cfg = MeasureConfig(warmup_ms=2, repeat=4, min_repeat_ms=0.2, cooldown_ms=1)
    measured = time_functions(executable, tvm.cpu(), [(graph_function(i), inp.shape, inp.dtype)
                                                     for i, inp in enumerate(inputs)], cfg)
    assert len(measured) == len(layers)
    assert all(m.count == 4 and 0 < m.min_ms <= m.median_ms for m in measured)
