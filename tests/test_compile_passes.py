"""The graph part of compile as one pipeline of named passes, each checked on the IR it leaves: a small int8 network
through the AVX2 pipeline (vpmaddubsw on 7-bit weights, vpmaddwd on wider ones widened to int16: channels padded
to 8), in process."""

import random

import numpy as np
import pytest

from conftest import TINY_SPACE, cpu_target

AVX2_NHWC = ["IntegerQDQ", "ElementwiseQDQ", "AccumulateFloat32", "ToNHWC", "RequantMultiplier", "PadChannels", "WidenWeights",
             "DecomposeOps", "CanonicalizeBindings", "f_zero_pipeline"]
NCHW = ["IntegerQDQ", "ElementwiseQDQ", "AccumulateFloat32", "RequantMultiplier", "DecomposeOps", "CanonicalizeBindings", "f_zero_pipeline"]


def _calls(mod):
    return [b.value for block in mod["main"].body.blocks for b in block.bindings if hasattr(b.value, "op")]


def _named(mod, *names):
    return [c for c in _calls(mod) if getattr(c.op, "name", None) in names]


def _dot_layers(mod):
    """uint8 x constant-weight convolutions (not grouped) and matmuls accumulating in int32: the dot-product's layers."""
    from tvm.ir.expr import Constant

    return [c for c in _named(mod, "relax.nn.conv2d", "relax.matmul")
            if isinstance(c.args[1], Constant) and str(c.args[0].ty.dtype) == "uint8"
            and str(c.attrs.out_dtype) == "int32" and int(getattr(c.attrs, "groups", 1)) == 1]


@pytest.fixture(scope="module")
def avx2(tmp_path_factory):
    """The AVX2 NHWC pipeline and its target, and a network with a classifier, with a module attribute."""
    from edgenas.compile.frontend import to_relax
    from edgenas.compile.tune import compile_target
    from edgenas.measure.batch import GraphJob
    from edgenas.space import get_space

    target = cpu_target("avx2", tmp_path_factory.mktemp("avx2"))
    space = get_space(TINY_SPACE)
    data = GraphJob(space, arch=space.sample(random.Random(0))).onnx("int8", target)
    mod, _ = to_relax(data, "tiny int8 network")
    return compile_target(target), mod.with_attr("edgenas.check", "kept")


@pytest.fixture(scope="module")
def full_range(avx2):
    """The same kind of network quantized with full-range (8-bit) weights, as the gate's fallback ships it."""
    from edgenas.compile.frontend import to_relax
    from edgenas.measure.onnx_export import to_onnx
    from edgenas.compile.qdq import quantize_for_latency
    from edgenas.space import get_space
    from edgenas.space.blocks import Network, randomize_bn

    space = get_space(TINY_SPACE)
    arch = space.sample(random.Random(0))
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    data = quantize_for_latency(to_onnx(randomize_bn(Network(space, arch), 0), shape), shape, False, reduce_range=False)
    return to_relax(data, "tiny int8 network, 8-bit weights")[0]


@pytest.fixture(scope="module")
def after(avx2):
    """The module as each pass of the pipeline leaves it, the input under "input", and the pipeline's timings."""
    import tvm

    from edgenas.compile.passes import Record, compile_pipeline, pass_names

    target, mod = avx2
    pipeline = compile_pipeline(target, "NHWC")
    record = Record({name: ("after", name, lambda m: m) for name in pass_names(pipeline)})
    with target, tvm.transform.PassContext(instruments=[record]):
        pipeline(mod)
    return {"input": mod, **record.results}, record.seconds


def test_pipeline_names_its_passes_in_order(avx2, tmp_path):
    from edgenas.compile.passes import compile_pipeline, pass_names
    from edgenas.compile.tune import compile_target

    names = pass_names(compile_pipeline(avx2[0], "NHWC"))
    print(" -> ".join(names))
    assert names == AVX2_NHWC
    assert pass_names(compile_pipeline(avx2[0], "NCHW")) == NCHW
    assert pass_names(compile_pipeline(compile_target(cpu_target("host", tmp_path)), "NCHW")) == NCHW


def test_each_pass_is_timed_and_keeps_the_module_attributes(after):
    irs, seconds = after
    assert list(seconds) == AVX2_NHWC and all(s >= 0 for s in seconds.values())
    assert seconds["f_zero_pipeline"] > 0  # it legalizes and fuses: never free
    assert list(irs) == ["input", *AVX2_NHWC]
    assert all(ir.attrs["edgenas.check"] == "kept" for ir in irs.values())


def test_integer_qdq_leaves_no_float_compute_on_the_quantized_path(after):
    from edgenas.compile.int8 import compute_ops, float_ops_on_quantized_path

    irs, _ = after
    assert float_ops_on_quantized_path(irs["input"]) > 0
    assert float_ops_on_quantized_path(irs["IntegerQDQ"]) == 0
    ops = compute_ops(irs["IntegerQDQ"])
    assert ops and all(k.endswith(":int32") for k in ops), ops


def test_elementwise_qdq_writes_out_quantize_dequantize_and_clip(after):
    irs, _ = after
    qdq = ("relax.quantize", "relax.dequantize", "relax.clip")
    assert _named(irs["IntegerQDQ"], *qdq)
    assert not _named(irs["ElementwiseQDQ"], *qdq)


def test_to_nhwc_converts_convolutions_and_transposes_no_constant_at_run_time(after):
    from tvm.ir.expr import Constant

    irs, _ = after
    convs = _named(irs["ToNHWC"], "relax.nn.conv2d")
    assert convs and all(c.attrs.data_layout == "NHWC" and c.attrs.kernel_layout == "OHWI" for c in convs)
    transposes = _named(irs["ToNHWC"], "relax.permute_dims")
    assert not [t for t in transposes if isinstance(t.args[0], Constant)]
    assert len(transposes) == 1  # the graph's NCHW input only


def test_requant_multiplier_leaves_no_division_by_a_constant(after):
    from tvm.ir.expr import Constant

    irs, _ = after

    def constant_divisions(mod):
        return [c for c in _named(mod, "relax.divide") if isinstance(c.args[1], Constant)]

    assert constant_divisions(irs["ToNHWC"])
    assert not constant_divisions(irs["RequantMultiplier"])


def test_pad_channels_makes_output_channels_a_multiple_of_the_lanes(after):
    from edgenas.compile.schedules import UBSW_256  # the fastest AVX2 dot product: the lanes and depth padded to

    irs, _ = after

    def output_channels(mod):
        # the channels are the weight's first axis (OHWI) for a convolution, its last for a matmul
        return [int(c.args[1].ty.shape[0 if c.op.name == "relax.nn.conv2d" else -1]) for c in _dot_layers(mod)
                if int(c.args[1].ty.shape[-1 if c.op.name == "relax.nn.conv2d" else 0]) % UBSW_256.depth == 0]

    assert any(n % UBSW_256.lanes for n in output_channels(irs["RequantMultiplier"]))
    padded = output_channels(irs["PadChannels"])
    assert padded and all(n % UBSW_256.lanes == 0 for n in padded), padded
    assert _named(irs["PadChannels"], "relax.strided_slice")  # sliced back to the model's channels


def test_widen_weights_keeps_7bit_weights_and_widens_the_others_to_int16(after, avx2, full_range):
    import tvm

    from edgenas.compile.passes import compile_pipeline

    irs, _ = after
    # as a build ships it for AVX2 (7-bit weights): vpmaddubsw multiplies them exactly, so they stay int8
    kept = _dot_layers(irs["WidenWeights"])
    assert kept and {str(c.args[1].ty.dtype) for c in kept} == {"int8"}
    assert all(np.abs(c.args[1].value.numpy().astype(int)).max() <= 64 for c in kept)
    # full-range weights would saturate vpmaddubsw's int16 sums: widened to int16, for vpmaddwd
    target, _ = avx2
    seen = {}

    @tvm.instrument.pass_instrument
    class After:
        def run_after_pass(self, mod, info):
            seen[info.name] = mod

    with target, tvm.transform.PassContext(instruments=[After()]):
        compile_pipeline(target, "NHWC")(full_range)
    assert {str(c.args[1].ty.dtype) for c in _dot_layers(seen["PadChannels"])} == {"int8"}
    widened = _dot_layers(seen["WidenWeights"])
    wide = [c for c in widened if str(c.args[1].ty.dtype) == "int16"]
    assert wide and all(np.abs(c.args[1].value.numpy()).max() > 64 for c in wide)
    assert all(np.abs(c.args[1].value.numpy().astype(int)).max() <= 64 for c in widened if c not in wide)


def test_the_pipeline_ends_in_fused_kernels(after):
    irs, _ = after
    assert not _named(irs["f_zero_pipeline"], "relax.nn.conv2d", "relax.matmul")
    assert any(gv.name_hint.startswith("fused_") for gv in irs["f_zero_pipeline"].functions)


def _anchor_blocks(mod) -> list[str]:
    """The convolution and matmul update blocks of every kernel of `mod`, by name (one per kernel; a tensorized one is
    `<anchor>_update_o`)."""
    from tvm import s_tir, tirx

    from edgenas.compile.schedules import ANCHORS, nested_blocks

    found = []
    for _gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            sch = s_tir.Schedule(func)
            names = [sch.get(b).name_hint for b in nested_blocks(sch, sch.get_sblock("root"))]
            found += [n for n in names if not n.endswith("_init")
                      and n.removesuffix("_o").removesuffix("_update") in ANCHORS]
    return found


@pytest.mark.parametrize("cpu", ["host", "avx2", "alderlake"])
def test_an_rgb_stem_reads_padded_channels_through_the_dot_product_and_computes_the_same_integers(cpu, tmp_path):
    """An RGB stem's 3 input channels, padded to the dot product's depth with zeros against zero weights: the
    convolution is tensorized like every other and its outputs are the exact reference's. Each class is compiled
    here (its IR checked); its code runs only where this CPU can run it."""
    import onnx
    import torch
    from torch import nn

    from conftest import assert_matches_the_exact_reference, output_step
    import tvm

    from edgenas.accuracy import ort_logits, vm_logits
    from edgenas.compile.build import CompileConfig, compile_onnx_model, schedule
    from edgenas.compile.frontend import to_relax
    from edgenas.compile.passes import compile_pipeline
    from edgenas.compile.schedules import padded_input_channels
    from edgenas.compile.tune import compile_target
    from edgenas.measure.onnx_export import shipped_onnx, to_onnx

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                        nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(16, 10)).eval()
    shape = (1, 3, 32, 32)
    target = cpu_target(cpu, tmp_path, run=False)
    data = shipped_onnx(to_onnx(net, shape), shape, "int8", target)
    tgt, seen = compile_target(target), {}

    @tvm.instrument.pass_instrument
    class After:
        def run_after_pass(self, mod, info):
            seen[info.name] = mod

    with tgt, tvm.transform.PassContext(instruments=[After()]):
        lowered = compile_pipeline(tgt, "NHWC")(to_relax(data, "rgb")[0])
    stem = [c for c in _dot_layers(seen["PadChannels"]) if int(c.args[1].ty.shape[1]) == 3]  # OHWI, 3x3
    assert len(stem) == 1 and int(stem[0].args[1].ty.shape[3]) == padded_input_channels(tgt, 3) == 4
    # every convolution and matmul kernel then multiplies through the dot product (a tensorized anchor is `<name>_o`)
    scheduled, _ = schedule(lowered, tgt)
    anchors = _anchor_blocks(scheduled)
    assert len(anchors) == 3 and all(name.endswith("_o") for name in anchors), anchors
    compiled = compile_onnx_model(data, "rgb", target, CompileConfig(tuning_db=tmp_path / "no-db"))
    if not target.runs_here:
        pytest.skip(f"this CPU cannot run {cpu} code: compiled and checked, not run")
    x = np.random.default_rng(0).standard_normal((20, *shape[1:])).astype(np.float32)
    ours, ref = vm_logits(compiled.executable, x), ort_logits(data, x, exact=True)
    assert_matches_the_exact_reference(ours, ref, output_step(onnx.load_from_string(data)))
