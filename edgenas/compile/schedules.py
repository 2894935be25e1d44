"""Default schedules for CPU kernels, so that a build with no tuning never ships naive loop nests.

TVM 0.27's CPU pipeline schedules nothing, and dlight's CPU rules cover only GEMV and reductions, so an untuned
kernel is its naive loop nest. These rules, written as dlight rules so that they touch only kernels that tuning
and the database left unscheduled, cover what the search spaces contain:

- `ChannelConv`: a convolution (1x1, kxk, depthwise) or matmul, NHWC, with its epilogue fused: output pixels in
  register tiles, output channels in vectors, the epilogue computed per tile while the accumulators are hot, and
  the weights repacked at compile time (`layout_rewrite_preproc` blocks, split off and constant-folded by
  `prepack_weights`). With uint8 x int8 operands, the innermost product is one `vpdpbusd` on a CPU with AVX-512
  VNNI (16 channels x 4) or AVX-VNNI (8 x 4); without VNNI (AVX-512BW, AVX2), `vpmaddubsw` then `vpmaddwd` by ones
  on 7-bit weights (16 or 8 channels x 4), exact because their int16 pair sums cannot saturate, or one `vpmaddwd`
  on full-range weights widened to int16 (16 or 8 x 2), each through our own tensor intrinsic (`DotProduct`,
  `_register`).
- `InlineElementwise`: every other kernel, each elementwise stage inlined into its neighbour, so one loop nest
  per reduction and one per epilogue is left.

`VERSION` names the rules: a latency table records it, so that a change here marks tables measured with the old
kernels as stale.
"""

from __future__ import annotations

from dataclasses import dataclass

#: 2: tiles sized to the target's vector registers (AVX2, SSE and NEON tiles no longer spill)
VERSION = "edgenas-rules-2"
#: the CPU classes whose kernels changed since, and how: their tables measured with VERSION are stale, the others'
#: not (3: vpmaddubsw on 7-bit weights for x86 without VNNI, 256-bit vpdpbusd with AVX-VNNI; 4: the epilogue's
#: pixels unrolled, which changed the code of x86 without AVX-512 only)
CLASS_VERSIONS = {"avxvnni": "edgenas-rules-4", "avx512bw": "edgenas-rules-3", "avx2": "edgenas-rules-4"}

#: the anchor blocks TOPI names, and for each the loop order (spatial, then reduction) of its iterators
ANCHORS = {
    "conv2d_nhwc": ("n", "y", "x", "f", "ry", "rx", "rc"),
    "group_conv2d_nhwc": ("n", "y", "x", "f", "ry", "rx", "rc"),
    "matmul": ("n", "f", "rc"),
}
#: output pixels per register tile: the largest of these that divides the row
TILE_PIXELS = (8, 7, 6, 5, 4, 3, 2, 1)
#: registers left for the weights and the broadcast input; the rest of the register file holds accumulators
SPARE_REGISTERS = 8
#: int8 dot-product layers: the most output pixels a register tile takes, by the reduction's length (input channels x
#: kernel taps), longest first. A short reduction does few dot products per tile, and a wide tile of them then costs
#: more in its epilogue and stores than it saves (docs/results/peers-2026-12-06.md); a tile of one channel block
#: takes the fewest pixels, as the shortest reductions do.
DOT_TILE_PIXELS = ((64, 8), (32, 4), (0, 2))
#: the version of that rule, recorded by int8 tables (`TableKey.schedules`): their kernels changed, fp32's did not
INT8_TILES = "edgenas-int8-tiles-1"


@dataclass(frozen=True)
class DotProduct:
    """An x86 instruction sequence that sums `depth` uint8 x `weight_dtype` products into each of `lanes` int32
    accumulators, registered as a tensor intrinsic whose accumulator stays in registers (scope "local")."""

    intrin: str  # the tensor intrinsic's name
    lanes: int
    depth: int
    weight_dtype: str  # int16 for vpmaddwd: weights widened at compile time (passes.WidenWeights), so it is exact
    llvm: str  # the LLVM intrinsic of the multiply
    kind: str  # "vnni": one vpdpbusd; "madd": vpmaddwd + add; "ubsw": vpmaddubsw, vpmaddwd by ones + add
    #: the largest weight magnitude for which it is exact (vpmaddubsw saturates its int16 pair sums beyond it:
    #: 2 x 255 x 64 < 32,768); None: any int8 weight
    weight_bound: int | None = None
    widen: str = ""  # ubsw: the vpmaddwd that widens its int16 pair sums to int32


#: u8 x i8 -> i32, one `vpdpbusd`: AVX-512 VNNI (512 bits) and AVX-VNNI (256 bits, e.g. Alder Lake-N)
VNNI = DotProduct("edgenas_vnni_16x4", 16, 4, "int8", "llvm.x86.avx512.vpdpbusd.512", "vnni")
VNNI_256 = DotProduct("edgenas_vnni_8x4", 8, 4, "int8", "llvm.x86.avx512.vpdpbusd.256", "vnni")
#: u8 x i8 -> i16 pairs (`vpmaddubsw`), then pairs of those -> i32 (`vpmaddwd` by ones): x86 without VNNI, for weights
#: within 7 bits (quantized with reduce_range), where the int16 sums cannot saturate
UBSW_512 = DotProduct("edgenas_ubsw_16x4", 16, 4, "int8", "llvm.x86.avx512.pmaddubs.w.512", "ubsw", 64,
                      "llvm.x86.avx512.pmaddw.d.512")
UBSW_256 = DotProduct("edgenas_ubsw_8x4", 8, 4, "int8", "llvm.x86.avx2.pmadd.ub.sw", "ubsw", 64, "llvm.x86.avx2.pmadd.wd")
#: u8 x i16 -> i32 pairs, one `vpmaddwd` and one add: x86 without VNNI, for full-range weights, widened to int16 at
#: compile time (exact where `vpmaddubsw` saturates)
MADD_512 = DotProduct("edgenas_madd_16x2", 16, 2, "int16", "llvm.x86.avx512.pmaddw.d.512", "madd")
MADD_256 = DotProduct("edgenas_madd_8x2", 8, 2, "int16", "llvm.x86.avx2.pmadd.wd", "madd")
_REGISTERED: set[str] = set()


def _register(dot: DotProduct) -> None:
    """TVM's own `dot_16x4_vnni` passes its operands as <16 x i32>, which the LLVM 22 inside the 0.27 wheel rejects
    (its vpdpbusd takes <64 x i8>): every candidate MetaSchedule tensorizes with it fails to build. Its accumulator
    is also a global buffer, so the tile could not live in registers. Hence our own."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if dot.intrin in _REGISTERED:
        return
    lanes, depth, wdtype = dot.lanes, dot.depth, dot.weight_dtype
    acc, pairs, quads = f"int32x{lanes}", f"int16x{2 * lanes}", f"int8x{4 * lanes}"

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((depth,), "uint8", offset_factor=1), b: T.Buffer((lanes, depth), wdtype, offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:depth], b[0:lanes, 0:depth])
            T.writes(c[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, depth):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    def intrin(name, *args, dtype):
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(name), *args, dtype=dtype)

    def quad_sum(acc_now, a_bytes, b_quads):
        """The accumulators plus 4 uint8 x int8 products per lane, in one or three instructions."""
        if dot.kind == "vnni":
            return intrin(dot.llvm, acc_now, a_bytes, b_quads, dtype=acc)
        pair_sums = intrin(dot.llvm, a_bytes, b_quads, dtype=pairs)
        return acc_now + intrin(dot.widen, pair_sums, T.broadcast(T.int16(1), 2 * lanes), dtype=acc)

    if dot.kind in ("vnni", "ubsw"):
        @T.prim_func(s_tir=True)
        def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((lanes, 4), "int8", offset_factor=1),
                 c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:4], b[0:lanes, 0:4])
                T.writes(c[0:lanes])
                a4 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
                c[T.ramp(T.int32(0), 1, lanes)] = quad_sum(c.vload([0], dtype=acc), T.reinterpret(
                    T.broadcast(a4, lanes), dtype=f"uint8x{4 * lanes}"), b.vload([0, 0], dtype=quads))
    else:
        @T.prim_func(s_tir=True)
        def impl(a: T.Buffer((2,), "uint8", offset_factor=1), b: T.Buffer((lanes, 2), "int16", offset_factor=1),
                 c: T.Buffer((lanes,), "int32", offset_factor=1, scope="local")) -> None:
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:2], b[0:lanes, 0:2])
                T.writes(c[0:lanes])
                a2 = T.reinterpret(T.cast(a.vload([0], "uint8x2"), "int16x2"), dtype="int32")
                c[T.ramp(T.int32(0), 1, lanes)] = c.vload([0], dtype=acc) + intrin(
                    dot.llvm, T.reinterpret(T.broadcast(a2, lanes), dtype=pairs), b.vload([0, 0], dtype=pairs), dtype=acc)

    TensorIntrin.register(dot.intrin, desc, impl, override=True)
    _REGISTERED.add(dot.intrin)


def register_intrinsics() -> None:
    for dot in (VNNI, VNNI_256, UBSW_512, UBSW_256, MADD_512, MADD_256):
        _register(dot)


#: by CPU feature, best first: the integer dot products of a CPU class, each layer taking the first that fits it
CLASSES = (("avx512vnni", (VNNI,)), ("avxvnni", (VNNI_256,)), ("avx512bw", (UBSW_512, MADD_512)),
           ("avx2", (UBSW_256, MADD_256)))


def cpu_class(target) -> str | None:
    """The x86 class (a CLASSES feature) of an LLVM target, or None (ARM, GPU, an x86 without AVX2)."""
    from tvm.target import codegen

    if target.kind.name != "llvm":
        return None
    return next((feature for feature, _ in CLASSES if codegen.target_has_features(feature, target)), None)


def rules_version(target) -> str:
    """The version of the rules that schedule a CPU `target`'s kernels (tables record it; GPUs: `gpu_schedules`)."""
    return CLASS_VERSIONS.get(cpu_class(target), VERSION)


def dot_products(target) -> tuple[DotProduct, ...]:
    """The integer dot products this CPU's uint8 layers multiply through, best first (none on ARM: plain vectors)."""
    return dict(CLASSES).get(cpu_class(target), ())


def padded_input_channels(target, channels: int) -> int:
    """The input channels an int8 NHWC convolution with `channels` of them reads on this CPU: up to the dot product's
    depth (`passes.PadChannels`) when that at most doubles them (an RGB stem's 3 become 4: the dot product then
    applies; a grey stem's 1 would cost four times the work, and stays); else as many as it has."""
    dots = dot_products(target)
    if not dots or channels % dots[0].depth == 0:
        return channels
    padded = -(-channels // dots[0].depth) * dots[0].depth
    return padded if padded <= 2 * channels else channels


def exact_weight_bound(target) -> int | None:
    """The largest weight magnitude this CPU's fastest int8 kernels are exact for, when they are not exact for every
    int8 weight (x86 without VNNI: 64, 7-bit weights); None when they are."""
    dots = dot_products(target)
    return dots[0].weight_bound if dots else None


def vector_registers(target) -> tuple[int, int]:
    """Bits per vector register and how many there are, from the target's CPU features (LLVM's own answer)."""
    from tvm.target import codegen

    def has(feature):
        return bool(codegen.target_has_features(feature, target))

    if has("neon"):  # aarch64 NEON: 32 x 128 bits
        return 128, 32
    if has("avx512f"):
        return 512, 32
    if has("avx"):  # AVX and AVX2: 16 x 256 bits
        return 256, 16
    return 128, 16  # SSE, and any CPU LLVM does not describe


def _inline_all_but(sch, keep) -> None:
    """Inline every block of the function but those in `keep` and the output block, as far as they go.

    (dlight's `try_inline` needs `normalize_prim_func`, which would re-index the anchor's loops.)"""
    kept = {sch.get(b).name_hint for b in keep}
    progress = True
    while progress:
        progress = False
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            if sch.get(block).name_hint in kept:
                continue
            for inline in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    inline(block)
                except Exception:  # noqa: BLE001 - cannot be inlined this way
                    continue
                progress = True
                break
            if progress:
                break


def _largest_divisor(n: int, options) -> int:
    return next(m for m in options if n % m == 0)


def _repack_weight(sch, anchor, w: int, matmul: bool, lanes: int, dot: DotProduct | None) -> None:
    """The weight, repacked at compile time (`prepack_weights` folds it) so that the inner loop reads it contiguously:
    `lanes` output channels innermost, and the dot product's `depth` input channels after them."""
    pre = sch.cache_read(anchor, w, "global")
    sch.annotate(pre, "meta_schedule.layout_rewrite_preproc", True)
    if matmul:  # weight (k, o)
        index = ((lambda k, o: (o // lanes, k // dot.depth, o % lanes, k % dot.depth)) if dot
                 else (lambda k, o: (o // lanes, k, o % lanes)))
    else:  # weight (o, kh, kw, i)
        index = ((lambda o, kh, kw, i: (o // lanes, kh, kw, i // dot.depth, o % lanes, i % dot.depth)) if dot
                 else (lambda o, kh, kw, i: (o // lanes, kh, kw, i, o % lanes)))
    sch.transform_layout(anchor, ("read", w), index)


def _vector_padding(sch, pad) -> None:
    """The padded input, once per call: a vector fill of the border value, then a vector copy (a vectorised
    `if_then_else` was scalarised)."""
    fill = sch.decompose_padding(pad, sch.get_loops(pad)[0])
    for b in (fill, pad):
        sch.vectorize(sch.get_loops(b)[-1])


class ChannelConv:
    """A dlight rule for conv2d (NHWC/OHWI, any kernel, grouped or not) and matmul anchors."""

    def __init__(self, dots: tuple[DotProduct, ...], registers: tuple[int, int] = (512, 32)):
        self.dots = dots
        self.bits, self.registers = registers

    def __call__(self):
        from tvm import s_tir
        from tvm.s_tir import dlight

        outer = self

        class Rule(dlight.ScheduleRule):
            def apply(self, func, target, tunable):
                sch = s_tir.Schedule(func)
                anchors = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint in ANCHORS]
                if len(anchors) != 1:
                    return None
                try:
                    outer.schedule(sch, anchors[0])
                except Exception:  # noqa: BLE001 - a shape the rule does not cover: the next rule takes it
                    return None
                return sch

        return Rule()

    def schedule(self, sch, anchor) -> None:
        block = sch.get(anchor)
        name = block.name_hint
        w = len(block.reads) - 1  # the weight is the anchor's last read, after the data
        data_read, weight_read = block.reads[0].source, block.reads[w].source
        pads = [p for p in sch.get_producers(anchor) if sch.get(p).name_hint == "pad_temp"]
        padding = bool(pads) and list(sch.get(pads[0]).writes[0].source.shape) != list(sch.get(pads[0]).reads[0].source.shape)
        _inline_all_but(sch, [anchor] + (pads if padding else []))
        epilogue = sch.get_consumers(anchor)
        if len(epilogue) > 1:
            raise ValueError("more than one consumer")
        loops = dict(zip(ANCHORS[name], sch.get_loops(anchor)))
        extent = lambda k: int(sch.get(loops[k]).extent)  # noqa: E731
        channels, depth = extent("f"), extent("rc")
        grouped = name == "group_conv2d_nhwc"
        dot = next((d for d in self.dots if not grouped and channels % d.lanes == 0 and depth % d.depth == 0
                    and str(data_read.dtype) == "uint8" and str(weight_read.dtype) == d.weight_dtype), None)
        native = self.bits // 32  # int32 or fp32 accumulators per register
        lanes = dot.lanes if dot else _largest_divisor(channels, [native >> s for s in range(native.bit_length())])
        _repack_weight(sch, anchor, w, name == "matmul", lanes, dot)
        # a tile of pixels x blocks accumulator registers, as large as the register file holds without spilling
        budget = self.registers - SPARE_REGISTERS
        most = budget
        if dot:
            reduction = depth * (extent("ry") * extent("rx") if "ry" in loops else 1)
            one_block = all((channels // lanes) % b for b in (2, 3))
            most = DOT_TILE_PIXELS[-1][1] if one_block else next(p for k, p in DOT_TILE_PIXELS if reduction >= k)
        pixels = _largest_divisor(extent("x"), [p for p in TILE_PIXELS if p <= min(budget, most)]) if "x" in loops else 1
        blocks_per_tile = next(b for b in (2, 3, 1) if (channels // lanes) % b == 0 and pixels * b <= budget)
        f_o, f_b, f_i = sch.split(loops["f"], [None, blocks_per_tile, lanes])
        if "x" in loops:
            x_o, x_i = sch.split(loops["x"], [None, pixels])
            spatial_outer, reduce = [loops["n"], loops["y"], x_o, f_o], [loops["ry"], loops["rx"]]
        else:
            x_i, spatial_outer, reduce = None, [loops["n"], f_o], []
        if dot:
            rc_o, rc_i = sch.split(loops["rc"], [None, dot.depth])
            sch.reorder(*spatial_outer, *reduce, rc_o, *([x_i] if x_i else []), f_b, f_i, rc_i)
        else:
            sch.reorder(*spatial_outer, *reduce, loops["rc"], *([x_i] if x_i else []), f_b, f_i)
        acc = sch.cache_write(anchor, 0, "local")
        sch.reverse_compute_at(acc, f_o)
        if epilogue:
            sch.compute_inline(acc)
            sch.reverse_compute_at(epilogue[0], f_o)
            out = epilogue[0]
        else:
            out = acc
        if not dot:  # before the reduction is split from its init: vectorize checks the block is complete
            sch.vectorize(f_i)
        if x_i is not None:
            sch.unroll(x_i)
        sch.unroll(f_b)
        init = sch.decompose_reduction(anchor, (reduce or [rc_o if dot else loops["rc"]])[0])
        if dot:
            sch.tensorize(f_i, dot.intrin)
            sch.vectorize(sch.get_loops(init)[-1])
        out_loops = sch.get_loops(out)
        sch.vectorize(out_loops[-1])
        # the epilogue's pixels unrolled here, not left to LLVM: without AVX-512's narrowing stores, LLVM vectorised a
        # depthwise epilogue across pixels instead of channels and stored its uint8 outputs a byte at a time
        if x_i is not None:
            sch.unroll(out_loops[-2])
        if padding:
            _vector_padding(sch, pads[0])


def _inline_rule():
    from tvm import s_tir
    from tvm.s_tir import dlight

    class InlineElementwise(dlight.ScheduleRule):
        """Every spatial (elementwise, injective) block inlined into its consumer or producer."""

        def apply(self, func, target, tunable):
            sch = s_tir.Schedule(func)
            blocks = dlight.normalize_prim_func(sch)
            if blocks is None:
                return None
            dlight.try_inline(sch, blocks)
            return sch

    return InlineElementwise()


def _conv_rule(target):
    """`ChannelConv` for this CPU: its vector registers, and its integer dot products when it has some."""
    dots = dot_products(target)
    for dot in dots:
        _register(dot)
    return ChannelConv(dots, vector_registers(target))()


def default_task_schedule(task_mod, target):
    """The default schedule of a tuning task's module (one PrimFunc), or None when no rule applies. Its trace,
    committed to the tuning database with its measured time, seeds MetaSchedule's search and competes with its
    candidates, so that tuning never ships a kernel slower than the untuned build's."""
    from tvm import s_tir

    (gv, func), = task_mod.functions.items()
    with target:
        for rule in (_conv_rule(target), _inline_rule()):
            sch = rule.apply(func, target, False)
            if isinstance(sch, s_tir.Schedule):
                # replayed on the task's module, so that the trace addresses its function by name
                replay = s_tir.Schedule(task_mod)
                sch.trace.apply_to_schedule(replay, remove_postproc=False)
                return replay
    return None


def schedule_pipeline(target, first: tuple = ()):
    """The kernel part of compile, after the database's schedules are applied, as one `tvm.transform.Sequential`:
    the default rules on the kernels still unscheduled (CPU targets; for GPUs, the passes `first`, then dlight's own
    rules in `tvm.compile`), then the weight repacking that the rules (or MetaSchedule's RewriteLayout) left in
    kernels split into functions of their own and folded at compile time on the constant weights. Run it with
    `target` (a `tvm.target.Target`) current."""
    import tvm
    from tvm import relax
    from tvm.s_tir import dlight

    passes = [*first]
    if target.kind.name == "llvm":
        passes.append(dlight.ApplyDefaultSchedule(_conv_rule(target), _inline_rule()))
    passes += [relax.transform.SplitLayoutRewritePreproc(), relax.transform.FoldConstant()]
    return tvm.transform.Sequential(passes, name="edgenas.schedule")


def nested_blocks(sch, parent):
    for block in sch.get_child_blocks(parent):
        yield block
        yield from nested_blocks(sch, block)


def naive_kernels(mod) -> list[str]:
    """The kernels of `mod` whose convolution or matmul is a naive loop nest: its update runs in no vectorised loop
    and through no tensor intrinsic (a tensorized block is renamed `<name>_o`). A scheduled or tuned build has none."""
    from tvm import s_tir, tirx

    naive = []
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        sch = s_tir.Schedule(func)
        for block in nested_blocks(sch, sch.get_sblock("root")):
            name = sch.get(block).name_hint
            base = name.removesuffix("_o").removesuffix("_update").removesuffix("_init")
            if base not in ANCHORS or name.endswith("_init"):
                continue
            if not name.endswith("_o") and not any(sch.get(loop).kind == tirx.ForKind.VECTORIZED
                                                   for loop in sch.get_loops(block)):
                naive.append(gv.name_hint)
                break
    return sorted(naive)
