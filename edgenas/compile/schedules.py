"""Default schedules for CPU kernels that neither tuning nor the database scheduled.

TVM 0.27's CPU pipeline schedules nothing, and dlight's CPU rules cover only GEMV and reductions, so an untuned
kernel is its naive loop nest: a fused convolution with an int8 requantization epilogue is some forty loop
nests, one buffer each, which LLVM takes seconds to compile and the CPU runs cold. Inlining every elementwise
stage into its neighbour leaves one loop nest per reduction and one per epilogue. This is the smallest rule
that pays everywhere, written as a dlight rule so that dlight's machinery applies it to unscheduled kernels only.

`VERSION` names the rules: a latency table records it, so that a change here marks tables measured with the
old kernels as stale.
"""

from __future__ import annotations

VERSION = "dlight-inline-1"


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


def default_schedules(mod, target):
    """`mod` with the default rules applied to its unscheduled kernels, for CPU (llvm) targets; GPU targets get
    dlight's own fallback in `tvm.compile`. `target` is a `tvm.target.Target`."""
    from tvm.s_tir import dlight

    if target.kind.name != "llvm":
        return mod
    with target:
        return dlight.ApplyDefaultSchedule(_inline_rule())(mod)
