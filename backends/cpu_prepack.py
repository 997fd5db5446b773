"""Constant GEMM operands packed once, at compile time, into the layout the kernel reads.

DirectGemm (backends/cpu_gemm_schedule.py) packs a B it is told is constant by a block of
its own kernel, marked as MetaSchedule marks its layout rewrites (a tuned kernel's
candidates rewrite such operands too). These passes tell both, marking the kernels'
parameters every call passes a constant for (as relax's AttachAttrLayoutFreeBuffers does),
and then move those blocks out of the kernels (SplitLayoutRewritePreproc), where
FoldConstant runs them on the weights: the kernel reads the packed copy, and the library
holds it in place of the original.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, s_tir
from tvm.ir.expr import Constant

from xpuport.lowering.library import op_calls

PREPACK = "meta_schedule.layout_rewrite_preproc"
LAYOUT_FREE = "layout_free_buffers"  # the parameters MetaSchedule and DirectGemm may pack


def mark_constant_operands() -> Any:
    """The pass marking each kernel's parameters that every call passes a constant for."""
    return _mark_constant_operands


@tvm.transform.module_pass(opt_level=0, name="xpuport.MarkConstantOperands")  # type: ignore[untyped-decorator]
def _mark_constant_operands(module: Any, _context: Any) -> Any:
    """relax's AttachAttrLayoutFreeBuffers, less what it does besides: it gives every
    kernel the attribute (an empty list where nothing is constant) and a new name
    (`fused_add_relu` became `fused_add_relu1`), which changed the kernels' names in the
    manifest and every kernel's workload, constant operands or not."""
    marked = module.clone()  # a pass must not change the module it was given
    for kernel, positions in _constant_positions(module).items():
        if positions:
            marked.update_func(kernel, module[kernel].with_attr(LAYOUT_FREE, sorted(positions)))
    return marked


def _constant_positions(module: Any) -> dict[Any, set[int]]:
    """Each kernel's argument positions that every call of it passes a constant or a
    model weight (a parameter past `num_input`) for."""
    call_tir = tvm.ir.Op.get("relax.call_tir")
    weights = {param for function in module.functions.values()
               if isinstance(function, relax.Function)
               for param in function.params[int((function.attrs or {}).get(
                   "num_input", len(function.params))):]}
    positions: dict[Any, set[int]] = {}
    for call in op_calls(module):
        if call.op.same_as(call_tir):
            kernel, args = call.args[0], call.args[1].fields
            here = {i for i, arg in enumerate(args) if isinstance(arg, Constant) or arg in weights}
            positions[kernel] = positions.get(kernel, here) & here
    return positions


@tvm.transform.module_pass(opt_level=0, name="xpuport.FoldPrepacked")  # type: ignore[untyped-decorator]
def fold_prepacked(module: Any, _context: Any) -> Any:
    """The packing blocks split off their kernels and run on the constants. The split sees
    only the kernels that pack: SplitLayoutRewritePreproc stops at any kernel whose root
    holds no compute block (topi's CumSum, written as loops in one opaque block)."""
    kernels = {gv: func for gv, func in module.functions.items()
               if isinstance(func, tvm.tirx.PrimFunc)}
    others = {gv: func for gv, func in kernels.items() if not _packs(func)}
    if len(others) == len(kernels):
        return module
    packing = tvm.IRModule({gv: func for gv, func in module.functions.items()
                            if gv not in others}, attrs=module.attrs)
    split = relax.transform.SplitLayoutRewritePreproc()(packing)
    folded = relax.transform.FoldConstant()(_with(split, others))
    # The kernels as they were, and the packing ones, folded away, are called no more.
    entries = [gv.name_hint for gv, func in folded.functions.items()
               if isinstance(func, relax.Function)]
    return relax.transform.DeadCodeElimination(entries)(folded)


def _with(module: Any, kernels: dict[Any, Any]) -> Any:
    """A copy of `module` with `kernels` added."""
    updated = module.clone()  # a pass must not change the module it was given
    for gv, func in kernels.items():
        updated[gv] = func
    return updated


def _packs(func: Any) -> bool:
    """Whether a block directly under the kernel's root carries the packing mark."""
    if not isinstance(func.body, s_tir.SBlockRealize):
        return False
    sch = s_tir.Schedule(func)
    root = sch.get_sblock(func.body.block.name_hint)
    return any(PREPACK in sch.get(block).annotations for block in sch.get_child_blocks(root))
