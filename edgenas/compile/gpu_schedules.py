"""Default schedules for NVIDIA GPU kernels (the `nvptx` target), on top of dlight's GPU rules.

`tvm.compile`'s GPU pipeline schedules every kernel it is handed unscheduled with dlight's rules: convolutions and
matmuls with `Matmul` (shared-memory tiles, threads over output pixels and channels, a register tile per thread),
depthwise convolutions with `GeneralReduction`, the rest with `GEMV`, `Reduction` and `Fallback`. What they lack is
int8: dlight's int8 rule (`MatmulInt8Tensorization`) needs tensor-core intrinsics that only the `cuda` target's CUDA
C code generator emits, so with NVPTX an int8 x int8 convolution is a loop of scalar multiply-adds.

`Dp4aMatmul` is dlight's `Matmul` with the innermost four steps of the reduction tensorized into one `dp4a`
(`llvm.nvvm.idp4a.s.s`: four int8 x int8 products summed into an int32; `.u.s` for uint8 activations), on
architectures that have it (sm_61 and later; the Jetson Nano's sm_53 has not). The tiles dlight loads into shared
memory keep the reduction (input channels) contiguous and padded to a multiple of 8, so each `dp4a` reads its
operands as one aligned 32-bit word.
"""

from __future__ import annotations

import re

#: names the GPU rules: a GPU latency table records it, so that a change here marks its tables stale
VERSION = "edgenas-gpu-rules-1"
#: the first architecture with `dp4a` (Pascal, sm_61)
DP4A_ARCH = 61
#: operand dtypes -> the LLVM intrinsic: int8 activations (CUDA targets quantize symmetrically) or uint8 ones (a
#: bundle quantized for a CPU), int8 weights
DP4A = {("int8", "int8"): "llvm.nvvm.idp4a.s.s", ("uint8", "int8"): "llvm.nvvm.idp4a.u.s"}
_REGISTERED: set[str] = set()


def sm_version(target) -> int | None:
    """The architecture of an NVPTX `tvm.target.Target` as a number (sm_87 -> 87), or None for another target."""
    if target.kind.name != "nvptx":
        return None
    m = re.fullmatch(r"sm_(\d+)a?", str(target.attrs.get("mcpu", "")))
    return int(m.group(1)) if m else None


def has_dp4a(target) -> bool:
    return (sm_version(target) or 0) >= DP4A_ARCH


def register_dp4a(a_dtype: str, b_dtype: str) -> str:
    """The `dp4a` tensor intrinsic for NVPTX with these operands, by name. (TVM's own, `dp4a_s8s8s32` and friends,
    call `__dp4a`, a CUDA C function that the NVPTX backend does not know.)"""
    name = f"edgenas_dp4a_{a_dtype}_{b_dtype}"
    if name in _REGISTERED:
        return name
    from tvm import s_tir
    from tvm.script import tirx as T

    llvm = DP4A[(a_dtype, b_dtype)]

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), a_dtype, offset_factor=1, scope="shared"),
             b: T.Buffer((4,), b_dtype, offset_factor=1, scope="shared"),
             c: T.Buffer((1,), "int32", offset_factor=1, scope="local")):
        with T.sblock("root"):
            T.reads(c[0], a[0:4], b[0:4])
            T.writes(c[0])
            for i in range(4):
                with T.sblock("update"):
                    vi = T.axis.remap("R", [i])
                    c[0] = c[0] + T.cast(a[vi], "int32") * T.cast(b[vi], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), a_dtype, offset_factor=1, scope="shared"),
             b: T.Buffer((4,), b_dtype, offset_factor=1, scope="shared"),
             c: T.Buffer((1,), "int32", offset_factor=1, scope="local")):
        with T.sblock("root"):
            T.reads(c[0], a[0:4], b[0:4])
            T.writes(c[0])
            c[0] = T.call_llvm_pure_intrin("int32", llvm, T.reinterpret("int32", a.vload([0], f"{a_dtype}x4")),
                                           T.reinterpret("int32", b.vload([0], f"{b_dtype}x4")), c[0])

    s_tir.TensorIntrin.register(name, desc, impl, override=True)
    _REGISTERED.add(name)
    return name


def _int8_update(sch):
    """The reduction block of a scheduled 8-bit -> int32 matmul or convolution (dlight names it `<anchor>_update`
    after decomposing the reduction) and its operands' dtypes (activations, weights), or None."""
    from tvm import tirx

    from edgenas.compile.schedules import nested_blocks

    for b in nested_blocks(sch, sch.get_sblock("root", func_name="main")):
        block = sch.get(b)
        if not block.name_hint.endswith("_update"):
            continue
        if not any(iv.iter_type == tirx.IterVar.CommReduce for iv in block.iter_vars):
            continue
        # reads: the accumulator, the activations' tile, the weights' tile
        dtypes = tuple(r.source.dtype for r in block.reads if r.source.dtype != "int32")
        if block.writes[0].source.dtype == "int32" and dtypes in DP4A:
            return b, dtypes
    return None


def tensorize_dp4a(sch) -> bool:
    """The innermost reduction loop of `sch`'s int8 update split by 4, moved innermost and tensorized into `dp4a`.
    False (and `sch` untouched) where the kernel is not int8 or its reduction tile does not split by 4."""
    from tvm import tirx
    from tvm.s_tir.dlight.analysis.common_analysis import get_sblockrealize

    found = _int8_update(sch)
    if found is None:
        return False
    b, dtypes = found
    block = sch.get(b)
    reduce = [v for iv, v in zip(block.iter_vars, get_sblockrealize(sch, b).iter_values)
              if iv.iter_type == tirx.IterVar.CommReduce]
    if len(reduce) != 1:
        return False
    used = {v.name for v in tirx.analysis.undefined_vars(reduce[0])}
    loops = list(sch.get_loops(b))
    inner = [i for i, loop in enumerate(loops) if sch.get(loop).loop_var.name in used]
    if not inner or int(sch.get(loops[inner[-1]]).extent) % 4:
        return False
    i = inner[-1]
    _, k4 = sch.split(loops[i], [None, 4])
    sch.reorder(*loops[i + 1:], k4)
    sch.tensorize(k4, register_dp4a(*dtypes))
    return True


def _dp4a_matmul():
    from tvm.s_tir import dlight

    class Dp4aMatmul(dlight.ScheduleRule):
        def apply(self, func, target, tunable):
            sch = dlight.gpu.Matmul().apply(func, target, tunable)
            if sch is None or not has_dp4a(target) or isinstance(sch, list):
                return sch
            trial = sch.copy()
            try:
                return trial if tensorize_dp4a(trial) else sch
            except Exception:  # a layout the intrinsic does not match (s_tir raises ScheduleError/TVMError): plain
                return sch

    return Dp4aMatmul()


def _missing_shared_memory(record) -> bool:
    return "missing 'max_shared_memory_per_block'" not in record.getMessage()


def _nvptx_shared_memory() -> None:
    """TVM 0.27's `nvptx` kind has no `max_shared_memory_per_block` attribute, so dlight's GEMV rule assumes 16 KB and
    warns once per kernel. Every architecture since sm_20 gives a block 48 KB, the `cuda` kind's default: used here,
    without the warning."""
    import logging

    from tvm.s_tir.dlight.analysis import common_analysis

    defaults = common_analysis.TARGET_KIND_TO_DEFAULT_MAX_SMEM
    defaults.setdefault("nvptx", defaults["cuda"])
    logger = logging.getLogger(common_analysis.__name__)
    if _missing_shared_memory not in logger.filters:
        logger.addFilter(_missing_shared_memory)


def gpu_schedule_passes(target) -> tuple:
    """The passes that schedule an NVPTX module's kernels before `tvm.compile`'s own dlight rules take the rest; none
    for another target."""
    from tvm.s_tir import dlight

    if target.kind.name != "nvptx":
        return ()
    _nvptx_shared_memory()
    return (dlight.ApplyDefaultSchedule(_dp4a_matmul()),)


def rules_version(target) -> str:
    """The version of the rules that schedule `target`'s kernels (tables record it)."""
    from edgenas.compile import schedules

    return VERSION if target.kind.name == "nvptx" else schedules.rules_version(target)
