"""Constant GEMM operands packed once, at compile time, into the layout the kernel reads.

DirectGemm (backends/cpu_gemm_schedule.py) packs a B it is told is constant by a block of
its own kernel, marked as MetaSchedule marks its layout rewrites. These passes tell it
(relax's AttachAttrLayoutFreeBuffers marks the kernels' parameters every call passes a
constant for) and then move those blocks out of the kernels (SplitLayoutRewritePreproc),
where FoldConstant runs them on the weights: the kernel reads the packed copy, and the
library holds it in place of the original.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, s_tir

PREPACK = "meta_schedule.layout_rewrite_preproc"
_LAYOUT_FREE = "layout_free_buffers"


def mark_constant_operands() -> Any:
    """The pass marking each kernel's parameters that every call passes a constant for."""
    return relax.transform.AttachAttrLayoutFreeBuffers()


@tvm.transform.module_pass(opt_level=0, name="xpuport.FoldPrepacked")  # type: ignore[untyped-decorator]
def fold_prepacked(module: Any, _context: Any) -> Any:
    """The packing blocks split off their kernels and run on the constants. The split sees
    only the kernels that pack: SplitLayoutRewritePreproc stops at any kernel whose root
    holds no compute block (topi's CumSum, written as loops in one opaque block)."""
    kernels = {gv: func for gv, func in module.functions.items()
               if isinstance(func, tvm.tirx.PrimFunc)}
    packing = {gv for gv, func in kernels.items() if _packs(func)}
    unmarked = {gv: func.without_attr(_LAYOUT_FREE) if _marked(func) else func
                for gv, func in kernels.items() if gv not in packing}
    if not packing:
        return _with(module, unmarked) if any(map(_marked, kernels.values())) else module
    rest = tvm.IRModule({gv: func for gv, func in module.functions.items()
                         if gv not in unmarked}, attrs=module.attrs)
    split = relax.transform.SplitLayoutRewritePreproc()(rest)
    folded = relax.transform.FoldConstant()(_with(split, unmarked))
    # The kernels as they were, and the packing ones, folded away, are called no more.
    entries = [gv.name_hint for gv, func in folded.functions.items()
               if isinstance(func, relax.Function)]
    return relax.transform.DeadCodeElimination(entries)(folded)


def _with(module: Any, kernels: dict[Any, Any]) -> Any:
    """A copy of `module` with `kernels` added or replacing its own."""
    updated = module.clone()  # a pass must not change the module it was given
    for gv, func in kernels.items():
        updated[gv] = func
    return updated


def _marked(func: Any) -> bool:
    return func.attrs is not None and _LAYOUT_FREE in func.attrs


def _packs(func: Any) -> bool:
    """Whether a block directly under the kernel's root carries the packing mark."""
    if not isinstance(func.body, s_tir.SBlockRealize):
        return False
    sch = s_tir.Schedule(func)
    root = sch.get_sblock(func.body.block.name_hint)
    return any(PREPACK in sch.get(block).annotations for block in sch.get_child_blocks(root))
